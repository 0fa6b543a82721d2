"""rucio-jupyterlab's own JSON schema for its configuration, and the checks its ``Config`` class makes.

The pinned release's ``config/schema.py`` is fetched once (``pip download --no-deps``) into the
cache; only that file is kept, and it is loaded only after checking it imports nothing (pure data).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema

__all__ = ["EXTENSION_VERSION", "load_extension_schema", "validate_extension"]

EXTENSION_VERSION = "41.0.0"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "datalake-hub"


def _extract_schema(archive: Path, target: Path) -> None:
    member_suffix = "rucio_jupyterlab/config/schema.py"
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zf:
            name = next(n for n in zf.namelist() if n.endswith(member_suffix))
            target.write_bytes(zf.read(name))
    else:
        with tarfile.open(archive) as tf:
            member = next(m for m in tf.getmembers() if m.name.endswith(member_suffix))
            fh = tf.extractfile(member)
            assert fh is not None
            target.write_bytes(fh.read())


def load_extension_schema() -> ModuleType | str:
    """The schema module, or why it could not be had (the caller skips with that reason)."""
    target = CACHE / f"rucio-jupyterlab-{EXTENSION_VERSION}" / "schema.py"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--quiet",
                    "-d",
                    tmp,
                    f"rucio-jupyterlab=={EXTENSION_VERSION}",
                ],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            archives = sorted(Path(tmp).iterdir())
            if proc.returncode != 0 or not archives:
                return f"cannot download rucio-jupyterlab {EXTENSION_VERSION}: {proc.stderr[-300:]}"
            partial = target.with_suffix(".part")
            _extract_schema(archives[0], partial)
            partial.rename(target)
    tree = ast.parse(target.read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)], "schema.py imports"
    spec = importlib.util.spec_from_file_location("rucio_jupyterlab_schema", target)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def validate_extension(config: dict[str, Any], schema: ModuleType) -> None:
    """What ``rucio_jupyterlab.config.Config`` checks, plus each instance on its own (no anyOf fallback)."""
    rc = config["RucioConfig"]
    jsonschema.validate(rc["instances"], schema=schema.root)
    for inst in rc["instances"]:
        jsonschema.validate(inst, schema=schema.instance)
    assert rc["default_auth_type"] in {"userpass", "x509", "x509_proxy", "oidc"}
    assert rc["default_instance"] in {i["name"] for i in rc["instances"]}
