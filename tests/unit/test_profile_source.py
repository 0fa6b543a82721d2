"""Hot reload: profile edits take effect without a restart; broken edits keep the last good set."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from hub_config.errors import ConfigError
from hub_config.profiles.source import ProfileSource
from hub_config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _source(tmp_path: Path, reference: Settings) -> tuple[ProfileSource, Clock, Path]:
    profiles = tmp_path / "profiles"
    shutil.copytree(ROOT / "profiles", profiles)
    data = reference.model_dump()
    data["profiles"] = {"directory": str(profiles), "reload_seconds": 30}
    clock = Clock()
    source = ProfileSource(Settings.model_validate(data), clock=clock)
    source.load_initial()
    return source, clock, profiles


NEW = "slug: tutorial\ndisplay_name: Tutorial\ndescription: For the summer school.\nimage: datalake-base\n"


def test_new_profile_appears_after_the_interval(tmp_path: Path, reference_settings: Settings) -> None:
    """A file added while the hub runs is offered at the next check, not before."""
    source, clock, profiles = _source(tmp_path, reference_settings)
    (profiles / "tutorial.yaml").write_text(NEW)
    clock.now = 10
    assert "tutorial" not in {p.profile.slug for p in source.reload_if_changed()}
    clock.now = 31
    assert "tutorial" in {p.profile.slug for p in source.reload_if_changed()}
    assert source.generation == 2


def test_broken_edit_keeps_last_good_and_logs_file_line(
    tmp_path: Path, reference_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A broken file is refused with file:line in the log; users keep every option they had."""
    source, clock, profiles = _source(tmp_path, reference_settings)
    before = [p.profile.slug for p in source.reload_if_changed()]
    (profiles / "hep.yaml").write_text("slug: hep\ndisplay_name: HEP\ndescription: d\nimage: x\nmounts: [tape]\n")
    clock.now = 31
    with caplog.at_level(logging.WARNING):
        after = [p.profile.slug for p in source.reload_if_changed()]
    assert after == before
    assert f"{profiles}/hep.yaml:5: mounts[0]: mount 'tape' is not defined" in caplog.text
    assert source.generation == 1, "a refused edit is not a new profile set"
    (profiles / "hep.yaml").write_text((ROOT / "profiles" / "hep.yaml").read_text() + "\n# fixed\n")
    clock.now = 62
    source.reload_if_changed()
    assert source.generation == 2, "the fixed file is taken"


def test_configmap_symlink_swap_is_seen(tmp_path: Path, reference_settings: Settings) -> None:
    """The kubelet updates a ConfigMap by swapping `..data`; the hub notices and reloads."""
    mount = tmp_path / "cm"
    mount.mkdir()
    v1 = mount / "..v1"
    shutil.copytree(ROOT / "profiles", v1)
    (mount / "..data").symlink_to("..v1")
    for f in v1.iterdir():
        (mount / f.name).symlink_to(f"..data/{f.name}")
    data = reference_settings.model_dump()
    data["profiles"] = {"directory": str(mount), "reload_seconds": 1}
    clock = Clock()
    source = ProfileSource(Settings.model_validate(data), clock=clock)
    source.load_initial()
    v2 = mount / "..v2"
    shutil.copytree(v1, v2)
    (v2 / "tutorial.yaml").write_text(NEW)
    (mount / "tutorial.yaml").symlink_to("..data/tutorial.yaml")
    (mount / "..data_tmp").symlink_to("..v2")
    (mount / "..data_tmp").replace(mount / "..data")
    clock.now = 2
    assert "tutorial" in {p.profile.slug for p in source.reload_if_changed()}


def test_broken_set_at_start_is_fatal(tmp_path: Path, reference_settings: Settings) -> None:
    """At hub start there is no last good set: a broken directory stops the start with the problems."""
    profiles = tmp_path / "p"
    profiles.mkdir()
    (profiles / "a.yaml").write_text("slug: [\n")
    data = reference_settings.model_dump()
    data["profiles"] = {"directory": str(profiles)}
    with pytest.raises(ConfigError):
        ProfileSource(Settings.model_validate(data)).load_initial()


async def test_refresh_reloads_off_the_event_loop(tmp_path: Path, reference_settings: Settings) -> None:
    """A big edit is parsed on a worker thread: the hub's loop keeps ticking while it loads."""
    import asyncio
    import time

    source, clock, profiles = _source(tmp_path, reference_settings)
    for i in range(300):
        (profiles / f"extra-{i}.yaml").write_text(NEW.replace("tutorial", f"extra-{i}"))
    clock.now = 31
    ticks = 0
    done = asyncio.Event()

    async def heartbeat() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    beat = asyncio.create_task(heartbeat())
    started = time.monotonic()
    await source.refresh()
    elapsed = time.monotonic() - started
    done.set()
    await beat
    assert source.generation == 2 and len(source.current()) > 300
    assert ticks >= max(2, int(elapsed / 0.005) // 4), f"the loop stalled: {ticks} ticks in {elapsed:.2f}s"


def test_empty_or_unreadable_set_is_refused_like_a_broken_one(
    tmp_path: Path, reference_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Removing every file (or a mount gone bad) is refused: users keep their options, the log says why."""
    source, clock, profiles = _source(tmp_path, reference_settings)
    before = [p.profile.slug for p in source.current()]
    for f in profiles.iterdir():
        f.unlink()
    (profiles / "dangling.yaml").symlink_to(tmp_path / "nowhere.yaml")
    clock.now = 31
    with caplog.at_level(logging.WARNING):
        assert [p.profile.slug for p in source.reload_if_changed()] == before
    assert "dangling.yaml: cannot read" in caplog.text
    (profiles / "dangling.yaml").unlink()
    clock.now = 62
    with caplog.at_level(logging.WARNING):
        assert [p.profile.slug for p in source.reload_if_changed()] == before
    assert "no profiles: every user would be offered no server" in caplog.text
