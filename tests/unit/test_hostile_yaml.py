"""Untrusted YAML (profiles anyone with ConfigMap access can edit, settings from values) is bounded.

Each class of hostile input is refused with file:line and no traceback, by `validate` as by the
hub's loader; Hypothesis then throws arbitrary text and structures at both loaders.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub_config.errors import MAX_PROBLEMS, ConfigError
from hub_config.profiles.loader import load_profile_text, load_profiles
from hub_config.settings.model import Settings
from hub_config.yamlsource import MAX_BYTES, MAX_DEPTH, parse_yaml

BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcde", "bcdef", strict=True)
)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        pytest.param("a: " + "[" * 5000 + "]" * 5000, f"nested deeper than {MAX_DEPTH} levels", id="deep-flow"),
        pytest.param(
            "".join(f"{'  ' * i}k:\n" for i in range(200)), f"nested deeper than {MAX_DEPTH}", id="deep-block"
        ),
        pytest.param(BOMB, "aliases expand to over", id="alias-bomb"),
        pytest.param("slug: !!python/object/apply:os.system [id]\n", "unknown YAML tag", id="python-tag"),
        pytest.param("slug: !Anything x\n", "unknown YAML tag !Anything", id="local-tag"),
        pytest.param("slug: !!binary aGVsbG8=\n", "unknown YAML tag", id="binary-tag"),
        pytest.param("x: 1\n" + "y" * (MAX_BYTES + 10), "larger than the 1024 KiB limit", id="too-big"),
    ],
)
def test_hostile_document_is_refused_with_a_location(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_yaml(text, "hostile.yaml")
    assert needle in str(err.value)
    assert str(err.value).startswith("hostile.yaml")


def test_a_refusal_shows_a_bounded_number_of_problems_and_bounded_values() -> None:
    text = "".join(f"key{i}: {'v' * 1500}\n" for i in range(500))
    with pytest.raises(ConfigError) as err:
        load_profile_text(text, "many.yaml")
    shown = str(err.value)
    assert len(err.value.problems) > MAX_PROBLEMS
    assert shown.count("\n") <= MAX_PROBLEMS + 1 and "more problem(s)" in shown
    assert len(shown) < 40_000


def test_validate_refuses_hostile_files_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "deep.yaml").write_text("a: " + "[" * 20000 + "]" * 20000)
    (tmp_path / "tag.yaml").write_text("slug: !!python/name:os.system x\n")
    (tmp_path / "dir.yaml").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "hub_config", "validate", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "deep.yaml:1: nested deeper than" in proc.stderr
    assert "tag.yaml:1: slug: unknown YAML tag" in proc.stderr
    assert "dir.yaml: cannot read: is a directory" in proc.stderr


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=30,
)
_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(st.text(max_size=400))
def test_fuzz_any_text_is_a_profile_or_a_config_error(text: str) -> None:
    try:
        load_profile_text(text, "fuzz.yaml")
    except ConfigError as err:
        assert all(p.source == "fuzz.yaml" for p in err.problems)


@_FUZZ
@given(_json)
def test_fuzz_any_structure_is_a_profile_or_a_config_error(data: object) -> None:
    with contextlib.suppress(ConfigError):
        load_profile_text(yaml.safe_dump(data), "fuzz.yaml")


@_FUZZ
@given(st.dictionaries(st.sampled_from(["iam", "rucio", "storage", "spawner", "site_name", "profiles"]), _json))
def test_fuzz_settings_are_settings_or_a_config_error(tmp_path_factory: pytest.TempPathFactory, data: dict) -> None:
    path = tmp_path_factory.mktemp("s") / "settings.yaml"
    path.write_text(yaml.safe_dump(data))
    with contextlib.suppress(ConfigError):
        Settings.from_file(path)


def test_loader_on_a_real_mount_layout_with_hostile_entries(tmp_path: Path) -> None:
    (tmp_path / "ok.yaml").write_text("slug: ok\ndisplay_name: OK\ndescription: d\nimage: datalake-base\n")
    (tmp_path / "gone.yaml").symlink_to(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError) as err:
        load_profiles([tmp_path])
    assert "gone.yaml: cannot read" in str(err.value)
