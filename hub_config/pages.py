"""`apply_pages`: the hub's page templates (hub_config/templates/) and what they show from settings."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from . import stop_notices
from .settings.model import Settings

__all__ = ["TEMPLATES", "apply_pages"]

TEMPLATES = Path(__file__).parent / "templates"
"""Our login, error and page templates, extending JupyterHub's own (docs/operator.md, "The hub's pages")."""


def apply_pages(c: Any, settings: Settings) -> None:
    """Site name, announcement banner and the user's stop notice on every page; our templates ahead of JupyterHub's.

    `update`/`prepend` merge with what other config files set (traitlets' lazy values).
    """
    announcement = settings.announcement
    c.JupyterHub.template_vars.update(
        {
            "datalake_site_name": settings.site_name,
            # JupyterHub's page template renders `announcement` unescaped; settings hold plain text.
            "announcement": html.escape(announcement.text) if announcement else None,
            "announcement_level": announcement.level if announcement else None,
            # Called per page with the signed-in user: why the hub stopped their server, if it did.
            "datalake_stop_notice": stop_notices.notice_for,
        }
    )
    if TEMPLATES.is_dir():
        c.JupyterHub.template_paths.prepend([str(TEMPLATES)])
