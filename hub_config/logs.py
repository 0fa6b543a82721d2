"""Send hub_config's log lines to the hub's own log, formatted and filtered like JupyterHub's.

JupyterHub puts its handler on the ``JupyterHub`` logger only, and nothing on the root logger,
so records from ``hub_config.*`` (Rucio provisioning, token rotation, profile reloads) were
dropped: an operator saw "Rucio access is unavailable" in a user's progress but no line in the
hub log saying why. Records are handed to that logger's handlers, so they share its format,
destination and level (``--debug`` included).
"""

from __future__ import annotations

import logging
from typing import Any

from .redact import redact

__all__ = ["HUB_LOGGER", "install_redaction", "redact_record", "route_to_hub_log"]

HUB_LOGGER = "JupyterHub"
_MAX_LOG_MESSAGE = 64 * 1024


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """``record`` with its message, traceback and stack masked by :func:`hub_config.redact.redact`."""
    try:
        message = record.getMessage()
    except (TypeError, ValueError):
        message = None  # a broken format string: logging reports it itself
    if message is not None:
        cleaned = redact(message, limit=_MAX_LOG_MESSAGE, keep_newlines=True)
        if cleaned != message:
            record.msg, record.args = cleaned, None
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        # Formatters reuse ``exc_text`` when set: the traceback's exception messages (an
        # HTTPError holding an IdP reply) are printed only in their masked form.
        record.exc_text = redact(
            _TRACEBACKS.formatException(record.exc_info), limit=_MAX_LOG_MESSAGE, keep_newlines=True
        )
    if record.stack_info:
        record.stack_info = redact(record.stack_info, limit=_MAX_LOG_MESSAGE, keep_newlines=True)
    return record


_TRACEBACKS = logging.Formatter()


def install_redaction() -> None:
    """Pass every log record this process creates, whichever logger, through :func:`redact_record`.

    A filter on the ``JupyterHub`` logger was not enough: logging applies a logger's filters only
    to records logged *on* it, and OAuthenticator logs the IdP's error body on ``tornado.application``
    (which JupyterHub parents to its logger), so that line reached the hub log unmasked, as did
    tracebacks, which formatters print from ``exc_info``. The record factory is the one point
    every record passes, at creation, whoever logs it and whichever handler prints it.
    """
    current = logging.getLogRecordFactory()
    if getattr(current, "datalake_redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return redact_record(current(*args, **kwargs))

    factory.datalake_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


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
    install_redaction()
    # Propagation stays on: the hub's root logger has no handler (no duplicates), and whatever
    # else listens at the root (pytest's capture, an operator's extra handler) still gets them.
