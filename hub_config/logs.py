"""Send hub_config's log lines to the hub's own log, formatted and filtered like JupyterHub's.

JupyterHub puts its handler on the ``JupyterHub`` logger only, and nothing on the root logger,
so records from ``hub_config.*`` (Rucio provisioning, token rotation, profile reloads) were
dropped: an operator saw "Rucio access is unavailable" in a user's progress but no line in the
hub log saying why. Records are handed to that logger's handlers, so they share its format,
destination and level (``--debug`` included).
"""

from __future__ import annotations

import logging

__all__ = ["HUB_LOGGER", "route_to_hub_log"]

HUB_LOGGER = "JupyterHub"


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
    # Propagation stays on: the hub's root logger has no handler (no duplicates), and whatever
    # else listens at the root (pytest's capture, an operator's extra handler) still gets them.
