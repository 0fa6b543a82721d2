"""hub_config's bytecode cache (hub_config/_bytecode.py): used when valid, never when stale or unsafe."""

from __future__ import annotations

import importlib
import marshal
import os
import shutil
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub_config import _bytecode

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def package(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """A throwaway package with one module, its cache directory, and a finder for it on sys.meta_path."""
    name = f"bcpkg_{uuid.uuid4().hex[:8]}"
    src = tmp_path / "src" / name
    src.mkdir(parents=True)
    (src / "__init__.py").write_text("")
    (src / "mod.py").write_text("VALUE = 'source'\n")
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    finder = _bytecode._Finder(name, cache)
    sys.path.insert(0, str(src.parent))
    sys.meta_path.insert(0, finder)  # type: ignore[arg-type]
    try:
        yield name, src, cache
    finally:
        sys.meta_path.remove(finder)  # type: ignore[arg-type]
        sys.path.remove(str(src.parent))
        for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[mod]


def _fresh_import(name: str) -> object:
    sys.modules.pop(name + ".mod", None)
    importlib.invalidate_caches()
    return importlib.import_module(name + ".mod")


def _cached_file(cache: Path, name: str) -> Path:
    return cache / f"{name}.mod.{sys.implementation.cache_tag}.pyc"


def test_first_import_writes_the_cache_and_the_next_one_runs_it(package: tuple[str, Path, Path]) -> None:
    name, src, cache = package
    assert _fresh_import(name).VALUE == "source"  # type: ignore[attr-defined]
    cached = _cached_file(cache, name)
    assert cached.is_file()
    # Plant different code under the same source hash: the next import must run it, so it used the cache.
    planted = compile("VALUE = 'from cache'\n", str(src / "mod.py"), "exec")
    cached.write_bytes(cached.read_bytes()[: _bytecode._HEADER] + marshal.dumps(planted))
    assert _fresh_import(name).VALUE == "from cache"  # type: ignore[attr-defined]


def test_changed_source_of_the_same_size_and_mtime_is_compiled_again(package: tuple[str, Path, Path]) -> None:
    name, src, cache = package
    assert _fresh_import(name).VALUE == "source"  # type: ignore[attr-defined]
    assert _cached_file(cache, name).is_file()
    mod = src / "mod.py"
    st = mod.stat()
    mod.write_text("VALUE = 'sourcX'\n")  # same length: only the bytes tell it apart
    os.utime(mod, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _fresh_import(name).VALUE == "sourcX"  # type: ignore[attr-defined]


def test_a_corrupt_cache_file_is_replaced_not_fatal(package: tuple[str, Path, Path]) -> None:
    name, _src, cache = package
    _fresh_import(name)
    cached = _cached_file(cache, name)
    corrupt = cached.read_bytes()[: _bytecode._HEADER] + b"\x00garbage"
    cached.write_bytes(corrupt)
    assert _fresh_import(name).VALUE == "source"  # type: ignore[attr-defined]
    assert cached.read_bytes() != corrupt, "the corrupt file was rewritten"


@pytest.mark.parametrize("mode", [0o770, 0o707])
def test_a_directory_others_may_write_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    monkeypatch.setenv(_bytecode.ENV, str(shared))
    assert _bytecode.cache_dir() is None
    shared.chmod(0o700)
    assert _bytecode.cache_dir() == shared


def test_off_when_python_writes_no_bytecode_or_the_setting_is_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(_bytecode.ENV, str(tmp_path / "c"))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    assert _bytecode.cache_dir() is None
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    assert _bytecode.cache_dir() == tmp_path / "c"
    monkeypatch.setenv(_bytecode.ENV, "")
    assert _bytecode.cache_dir() is None


def test_the_hub_package_on_a_read_only_mount_caches_in_the_working_directory(tmp_path: Path) -> None:
    """As in the chart: the package is read-only, the hub's working directory is not."""
    mount = tmp_path / "mount"
    shutil.copytree(ROOT / "hub_config", mount / "hub_config", ignore=shutil.ignore_patterns("__pycache__"))
    for path in mount.rglob("*"):
        path.chmod(stat.S_IMODE(path.stat().st_mode) & ~0o222)
    workdir = tmp_path / "srv"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", _bytecode.ENV)}
    env["PYTHONPATH"] = str(mount)
    probe = "import hub_config.apply as a; print(type(a.__spec__.loader).__name__)"
    runs = [
        subprocess.run([sys.executable, "-c", probe], cwd=workdir, env=env, capture_output=True, text=True, timeout=120)
        for _ in range(2)
    ]
    try:
        for run in runs:
            assert run.returncode == 0, run.stderr
            assert run.stdout.strip() == "CachedSourceLoader"
        cached = sorted(p.name for p in (workdir / ".cache" / "hub_config").iterdir())
        assert f"hub_config.apply.{sys.implementation.cache_tag}.pyc" in cached
        assert len(cached) >= 40, cached  # every module apply imports
    finally:
        for path in mount.rglob("*"):
            path.chmod(stat.S_IMODE(path.stat().st_mode) | 0o200)
