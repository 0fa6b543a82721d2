"""Send hub_config's log lines to the hub's own log, formatted and filtered like JupyterHub's.

JupyterHub puts its handler on the ``JupyterHub`` logger only, and nothing on the root logger,
so records from ``hub_config.*`` (Rucio provisioning, token rotation, profile reloads) were
dropped: an operator saw "Rucio access is unavailable" in a user's progress but no line in the
hub log saying why. Records are handed to that logger's handlers, so they share its format,
destination and level (``--debug`` included).
"""

from __future__ import annotations

import logging

from .redact import redact

__all__ = ["HUB_LOGGER", "RedactingFilter", "route_to_hub_log"]

HUB_LOGGER = "JupyterHub"
_MAX_LOG_MESSAGE = 64 * 1024


class RedactingFilter(logging.Filter):
    """Masks tokens in every record the hub logger emits, whoever logged it.

    OAuthenticator logs the IdP's reply body at ERROR when a refresh fails, and such a body can
    hold a new or old refresh token; our own lines are built not to carry one. The filter sits on
    the ``JupyterHub`` logger, whose handlers every hub line (ours included) goes through, and
    rewrites the formatted message with :func:`hub_config.redact.redact` (JWT shapes and
    credential-named fields; a megabyte body is cut short).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True  # a broken format string: logging reports it itself
        cleaned = redact(message, limit=_MAX_LOG_MESSAGE, keep_newlines=True)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class _ToHubLog(logging.Handler):
    """Re-emits records through the JupyterHub app logger's handlers, at that logger's level."""

    def emit(self, record: logging.LogRecord) -> None:
        hub = logging.getLogger(HUB_LOGGER)
        if hub.isEnabledFor(record.levelno):
            hub.handle(record)


def route_to_hub_log(name: str = "hub_config") -> None:
    """Route ``name`` and its children to the hub log (idempotent: config may be loaded twice)."""
    logger = logging.getLogger(name)
    if not any(isinstance(h, _ToHubLog) for h in logger.handlers):
        logger.addHandler(_ToHubLog())
    logger.setLevel(logging.DEBUG)  # the hub logger's level decides
    hub = logging.getLogger(HUB_LOGGER)
    if not any(isinstance(f, RedactingFilter) for f in hub.filters):
        hub.addFilter(RedactingFilter())
    # Propagation stays on: the hub's root logger has no handler (no duplicates), and whatever
    # else listens at the root (pytest's capture, an operator's extra handler) still gets them.
