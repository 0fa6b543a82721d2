"""The hub restarts itself when its settings file changes — as the kubelet changes a ConfigMap volume.

The file is laid out as the kubelet lays out a ConfigMap directory mount (`settings.yaml` ->
`..data/settings.yaml`, `..data` -> a timestamped directory swapped atomically on update), so the
watcher is tested against the real update mechanism, not a plain rewrite.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest
import yaml

from hub_config.settings_watch import SettingsWatch

BASE = {
    "iam": {"issuer": "https://iam.example.org/", "client_id": "hub", "allowed_groups": ["escape"]},
    "site_name": "Before",
}


class ConfigMapDir:
    """A ConfigMap volume as the kubelet writes it, updated the way the kubelet updates it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.generation = 0
        root.mkdir()
        (root / "settings.yaml").symlink_to("..data/settings.yaml")

    @property
    def file(self) -> Path:
        return self.root / "settings.yaml"

    def write(self, text: str) -> None:
        self.generation += 1
        data = self.root / f"..2026_12_02_{self.generation:04d}"
        data.mkdir()
        (data / "settings.yaml").write_text(text)
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(data.name)
        os.replace(tmp, self.root / "..data")


@pytest.fixture
def mounted(tmp_path: Path) -> ConfigMapDir:
    cm = ConfigMapDir(tmp_path / "settings")
    cm.write(yaml.safe_dump(BASE))
    return cm


def _watch(cm: ConfigMapDir) -> tuple[SettingsWatch, list[int]]:
    calls: list[int] = []
    return SettingsWatch(cm.file, on_change=lambda: calls.append(1)), calls


def test_unchanged_settings_never_restart(mounted: ConfigMapDir) -> None:
    watch, calls = _watch(mounted)
    mounted.write(yaml.safe_dump(BASE))  # the kubelet re-projects the same bytes
    assert not watch.check()
    assert calls == []


def test_valid_change_restarts_once(mounted: ConfigMapDir) -> None:
    watch, calls = _watch(mounted)
    mounted.write(yaml.safe_dump({**BASE, "site_name": "After"}))
    assert watch.check()
    assert not watch.check()  # asked once; the new process compares against its own start
    assert calls == [1]


def test_invalid_change_is_reported_once_and_the_hub_keeps_serving(
    mounted: ConfigMapDir, caplog: pytest.LogCaptureFixture
) -> None:
    watch, calls = _watch(mounted)
    text = yaml.safe_dump(BASE) + "site_nmae: typo\n"
    mounted.write(text)
    with caplog.at_level(logging.ERROR, logger="hub_config.settings_watch"):
        assert not watch.check()
        assert not watch.check()
    assert calls == []
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "keeps its current settings" in errors[0]
    assert f"settings.yaml:{text.count(chr(10))}: site_nmae: unknown key" in errors[0]
    mounted.write(yaml.safe_dump({**BASE, "site_name": "Fixed"}))  # the admin fixes it: now it applies
    assert watch.check()
    assert calls == [1]


def test_edit_back_to_the_running_settings_does_not_restart(mounted: ConfigMapDir) -> None:
    watch, calls = _watch(mounted)
    mounted.write("not: [valid")
    assert not watch.check()
    mounted.write(yaml.safe_dump(BASE))
    assert not watch.check()
    assert calls == []


def test_file_missing_mid_swap_is_not_a_change(mounted: ConfigMapDir) -> None:
    watch, calls = _watch(mounted)
    os.unlink(mounted.root / "..data")
    assert not watch.check()
    assert calls == []


def test_watch_thread_restarts_within_its_interval(mounted: ConfigMapDir) -> None:
    watch, calls = _watch(mounted)
    watch.start(0.05)
    try:
        mounted.write(yaml.safe_dump({**BASE, "site_name": "After"}))
        deadline = time.monotonic() + 10
        while not calls and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        watch.stop()
    assert calls == [1]
