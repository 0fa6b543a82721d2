"""The spawn form as a browser without JavaScript gets and posts it: cards, fields, validation.

The form is parsed with the standard library's HTML parser and "submitted" the way a browser does
(every named control with its current value), then goes through KubeSpawner's form parsing and our
validation, as a POST to /hub/spawn does. The browser journey (tests/e2e) checks layout and height.
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from tornado import web
from traitlets.config import Config

from hub_config.profiles.source import ProfileSource
from hub_config.settings import Settings
from hub_config.spawner import DatalakeSpawner, apply_spawner

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("offline_kubeconfig")


class Form(HTMLParser):
    """Named controls with the values a browser would submit, plus scripts, labels and ids seen."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.radios: dict[str, bool] = {}
        self.selects: dict[str, str] = {}
        self.texts: dict[str, str] = {}
        self.label_for: set[str] = set()
        self.ids: set[str] = set()
        self.scripts = 0
        self.described_by: dict[str, str] = {}
        self._select: str | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "script":
            self.scripts += 1
        elif tag == "label" and "for" in a:
            self.label_for.add(a["for"])
        elif tag == "input" and a.get("type") == "radio":
            self.radios[a["value"]] = "checked" in a
            self.described_by[a["value"]] = a.get("aria-describedby", "")
        elif tag == "input" and a.get("type") == "text":
            self.texts[a["name"]] = a.get("value", "")
        elif tag == "select":
            self._select = a["name"]
        elif tag == "option" and self._select and ("selected" in a or self._select not in self.selects):
            self.selects[self._select] = a["value"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None

    def submit(self, profile: str, **changes: str) -> dict[str, list[str]]:
        """What a plain POST carries: the profile radio and every select and text box of every card."""
        data = {**self.selects, **self.texts, **changes, "profile": profile}
        return {k: [v] for k, v in data.items()}


def _spawner(reference: Settings, groups: list[str], profiles: Path = ROOT / "profiles") -> DatalakeSpawner:
    data = reference.model_dump()
    data["profiles"] = {"directory": str(profiles)}
    settings = Settings.model_validate(data)
    source = ProfileSource(settings)
    source.load_initial()
    c = Config()
    apply_spawner(c, settings, source)
    spawner = DatalakeSpawner(_mock=True, config=c)
    spawner.user.groups = [SimpleNamespace(name=g) for g in groups]
    return spawner


async def _form(spawner: DatalakeSpawner) -> tuple[str, Form]:
    html = await spawner._render_options_form_dynamically(spawner)
    return html, Form(html)


async def test_cards_show_what_each_option_gets_and_need_no_script(reference_settings: Settings) -> None:
    """One radio per offered option, the default checked, each labelled and described; no script at all."""
    html, form = await _form(_spawner(reference_settings, ["escape"]))
    assert list(form.radios) == ["base", "hep", "hep-slim", "datascience", "devops", "full", "ska-sdc1"]
    assert [slug for slug, checked in form.radios.items() if checked] == ["base"]
    assert form.scripts == 0, "the choices show by CSS alone, so the form works without JavaScript"
    for slug in form.radios:
        assert f"profile-item-{slug}" in form.label_for, f"{slug}: the radio has a label"
        assert form.described_by[slug] in form.ids, f"{slug}: the card's text describes the radio"
    assert "<code>datalake-hep:2026.11</code>" in html
    assert "Mounts home, /eos, /cvmfs, /scratch" in html
    assert html.count("<span>Apps: ") == 3, "devops, datascience and full offer web apps beside JupyterLab"
    assert "<span>Apps: JupyterLab, VS Code, TensorBoard</span>" in html
    for name in form.selects:
        assert name in form.label_for, f"{name}: every menu has a label"


async def test_descriptions_are_text_not_markup(reference_settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text(
        "slug: x\ndisplay_name: 'X <i>y</i>'\ndescription: 'Has <script>alert(1)</script> in it'\nimage: datalake-base\n"
    )
    html, form = await _form(_spawner(reference_settings, ["escape"], tmp_path))
    assert form.scripts == 0
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "X &lt;i&gt;y&lt;/i&gt;" in html


async def test_a_plain_post_starts_the_chosen_option_with_its_choices(reference_settings: Settings) -> None:
    """Every card's menus are posted; only the chosen option's count, and an empty free-tag box is dropped."""
    spawner = _spawner(reference_settings, ["escape"])
    _, form = await _form(spawner)
    assert "profile-option-full--image_tag--unlisted-choice" in form.texts
    data = form.submit("hep", **{"profile-option-hep--cores": "8", "profile-option-base--cores": "4"})
    spawner.user_options = spawner.options_from_form(data)
    assert spawner.user_options == {"profile": "hep", "cores": "8", "memory": "8G", "runtime_hours": "24"}
    await spawner.load_user_options()
    assert spawner.cpu_limit == 8

    full = _spawner(reference_settings, ["escape"])
    full.user_options = full.options_from_form(
        form.submit("full", **{"profile-option-full--image_tag--unlisted-choice": "2025.06"})
    )
    await full.load_user_options()
    assert full.image.endswith("/datalake-full:2025.06"), "a typed tag wins over the menu, as with KubeSpawner's form"


@pytest.mark.parametrize(
    ("profile", "changes", "status"),
    [
        ("gpu", {}, 403),  # not offered to these groups, even when posted by hand
        ("hep", {"profile-option-hep--cores": "64"}, 400),  # not on the menu
        ("full", {"profile-option-full--image_tag--unlisted-choice": "latest"}, 400),  # fails the tag pattern
    ],
)
async def test_a_forged_post_is_refused_before_any_pod(
    reference_settings: Settings, profile: str, changes: dict[str, Any], status: int
) -> None:
    spawner = _spawner(reference_settings, ["escape"])
    _, form = await _form(spawner)
    spawner.user_options = spawner.options_from_form(form.submit(profile, **changes))
    with pytest.raises(web.HTTPError) as err:
        await spawner.load_user_options()
    assert err.value.status_code == status
