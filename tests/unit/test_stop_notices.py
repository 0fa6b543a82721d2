"""The notice a user sees on the hub's pages after the hub stopped their server for its runtime."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import jinja2
from traitlets.config import Config

from hub_config import stop_notices
from hub_config.pages import TEMPLATES, apply_pages
from hub_config.settings import Settings


def test_runtime_message_says_what_when_and_why() -> None:
    """The sentence names the limit chosen, the stop time and the start time, in UTC."""
    now = dt.datetime(2026, 12, 4, 15, 30)
    msg = stop_notices.runtime_message("Your server", 8, now - dt.timedelta(hours=8, minutes=1), now)
    assert msg.startswith("Your server was stopped at 2026-12-04 15:30 UTC: it reached the maximum runtime of 8 hours")
    assert "(started 2026-12-04 07:29 UTC)" in msg
    assert "1 hour " in stop_notices.runtime_message("x", 1, None, now)


def test_notice_shows_to_its_user_until_they_start_again() -> None:
    """Only the user concerned sees it; a new start clears it; the set stays bounded."""
    stop_notices.record("ann", "stopped for runtime")
    assert stop_notices.notice_for(SimpleNamespace(name="ann")) == "stopped for runtime"
    assert stop_notices.notice_for(SimpleNamespace(name="ben")) is None
    assert stop_notices.notice_for(None) is None, "signed-out pages have no user"
    stop_notices.clear("ann")
    assert stop_notices.notice_for(SimpleNamespace(name="ann")) is None
    for i in range(stop_notices.MAX_NOTICES + 5):
        stop_notices.record(f"u{i}", "m")
    assert len(stop_notices._NOTICES) == stop_notices.MAX_NOTICES
    assert stop_notices.notice_for(SimpleNamespace(name="u0")) is None, "oldest dropped first"
    stop_notices._NOTICES.clear()


def test_page_template_shows_the_notice_escaped(reference_settings: Settings) -> None:
    """Every hub page renders the user's notice, as text (the template variable is called per user)."""
    c = Config()
    apply_pages(c, reference_settings)
    variable = c.JupyterHub.template_vars.get_value({})["datalake_stop_notice"]
    stop_notices.record("ann", "Your server <b>was</b> stopped")
    try:
        value = variable(SimpleNamespace(name="ann"))
    finally:
        stop_notices.clear("ann")
    stock = jinja2.DictLoader({"templates/page.html": "{% block announcement %}{% endblock %}"})
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(TEMPLATES)), stock]), autoescape=True
    )
    html = env.get_template("page.html").render(datalake_stop_notice=value)
    assert 'id="datalake-stop-notice"' in html
    assert "Your server &lt;b&gt;was&lt;/b&gt; stopped" in html
    assert 'id="datalake-stop-notice"' not in env.get_template("page.html").render(datalake_stop_notice=None)
