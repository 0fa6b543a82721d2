"""The import rules of hub_config, checked by importing each module in a fresh interpreter.

1. Every module imports on its own, first: no import cycle that only works in a lucky order.
2. Models and pure builders never load JupyterHub, KubeSpawner, OAuthenticator or the Kubernetes
   client: they run in `validate`/`preview`, in the chart's schema generation and in tests without a
   hub, and stay cheap to import.
3. The CLI (`python -m hub_config validate|preview|schema`) never loads the spawner, the Kubernetes
   adapter or JupyterHub: an admin checks profiles on a laptop.
4. Settings never pull in the profile loader or its KubeSpawner conversion (settings may hold inline
   profiles, so `settings.model` imports `profiles.model`, and only that).
5. Each framework enters through one adapter: `kubernetes_asyncio` only in `kube.py`, `kubespawner`
   only in `spawner.py` (and `preview.py`, for KubeSpawner's own slug escaping), `oauthenticator` and
   `jupyterhub` only in `auth/authenticator.py` (with its callback page, `auth/callback.py`),
   `spawner.py` and `status.py` (the admins' page).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "hub_config"
MODULES = sorted(
    ".".join(p.with_suffix("").relative_to(PACKAGE.parent).parts).removesuffix(".__init__")
    for p in PACKAGE.rglob("*.py")
    if p.name != "__main__.py"
)
FRAMEWORKS = ("jupyterhub", "kubespawner", "oauthenticator", "kubernetes_asyncio")
PURE = (
    "hub_config.errors",
    "hub_config.jwt",
    "hub_config.modelbase",
    "hub_config.pod",
    "hub_config.profiles.kubespawner",
    "hub_config.profiles.loader",
    "hub_config.profiles.model",
    "hub_config.redact",
    "hub_config.rucio.account",
    "hub_config.rucio.render",
    "hub_config.rucio.secret",
    "hub_config.rucio.selection",
    "hub_config.safevalue",
    "hub_config.schema",
    "hub_config.settings",
    "hub_config.settings_watch",
    "hub_config.storage",
    "hub_config.yamlsource",
)
ADAPTERS = {
    "kubernetes_asyncio": {"hub_config.kube"},
    "kubespawner": {"hub_config.spawner", "hub_config.preview"},
    "oauthenticator": {"hub_config.auth.authenticator", "hub_config.auth.callback"},
    "jupyterhub": {
        "hub_config.auth.authenticator",
        "hub_config.auth.callback",
        "hub_config.spawner",
        "hub_config.status",
    },
}


def _loaded_by(module: str) -> set[str]:
    """The modules a fresh interpreter holds after `import module` (raises if the import fails)."""
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120)
    if proc.returncode != 0:
        raise AssertionError(f"`import {module}` fails in a fresh interpreter:\n{proc.stderr[-2000:]}")
    return set(json.loads(proc.stdout))


@pytest.fixture(scope="module")
def loaded() -> dict[str, set[str]]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(MODULES, pool.map(_loaded_by, MODULES), strict=True))


def test_every_module_imports_on_its_own(loaded: dict[str, set[str]]) -> None:
    assert set(loaded) == set(MODULES) and len(MODULES) > 30


@pytest.mark.parametrize("module", PURE)
def test_models_and_builders_load_no_framework(loaded: dict[str, set[str]], module: str) -> None:
    assert module in MODULES, f"{module} is listed as pure but does not exist"
    assert [f for f in FRAMEWORKS if f in loaded[module]] == []


def test_cli_loads_no_spawner_kube_or_jupyterhub(loaded: dict[str, set[str]]) -> None:
    banned = {"hub_config.spawner", "hub_config.kube", "jupyterhub", "kubernetes_asyncio"}
    assert sorted(banned & loaded["hub_config.cli"]) == []


def test_settings_do_not_pull_in_the_profile_loader(loaded: dict[str, set[str]]) -> None:
    assert sorted(m for m in loaded["hub_config.settings"] if m.startswith("hub_config.profiles.")) == [
        "hub_config.profiles.model"
    ]


def _direct_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_each_framework_enters_through_its_adapter() -> None:
    offenders: list[str] = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.with_suffix("").relative_to(PACKAGE.parent).parts)
        for framework in _direct_imports(path) & set(ADAPTERS):
            if module not in ADAPTERS[framework]:
                offenders.append(f"{module} imports {framework}")
    assert sorted(offenders) == []


def _apply_functions() -> dict[str, ast.FunctionDef]:
    found: dict[str, ast.FunctionDef] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("apply_") and node.name != "apply_from_file":
                found[f"{path.relative_to(PACKAGE)}:{node.name}"] = node
    return found


def test_config_writes_are_one_apply_function_per_concern() -> None:
    """`apply()` writes nothing to `c` itself, it calls one `apply_<concern>` each; those only write `c.*`:
    none discovers the IdP, reads a secret, a file or the environment on the side."""
    functions = _apply_functions()
    assert {"auth/configure.py:apply_auth", "spawner.py:apply_spawner", "pages.py:apply_pages"} <= set(functions)
    side_reads = {"discover", "read_client_secret", "environ", "getenv", "open", "read_text", "read_bytes"}
    offenders = []
    for where, fn in functions.items():
        for node in ast.walk(fn):
            name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
            if name in side_reads:
                offenders.append(f"{where} uses {name}")
    assert offenders == []
    apply_fn = next(
        n
        for n in ast.walk(ast.parse((PACKAGE / "apply.py").read_text()))
        if isinstance(n, ast.FunctionDef) and n.name == "apply"
    )
    called = {n.func.id for n in ast.walk(apply_fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert {f.split(":")[1] for f in functions} <= called, "apply() calls every apply_<concern>"
    writes = [
        ast.unparse(t)
        for n in ast.walk(apply_fn)
        if isinstance(n, ast.Assign)
        for t in n.targets
        if ast.unparse(t).startswith("c.")
    ]
    assert writes == []


def test_the_dask_gateway_config_needs_no_hub_only_packages() -> None:
    """The gateway's process runs `hub_config.dask.gateway` (which lists pods through `kube.py`)
    without the hub's prometheus_client, jupyterhub or kubespawner: importing and configuring it
    must not pull them in (a merge once made every gateway start fail on prometheus_client)."""
    code = (
        "import sys\n"
        "for banned in ('prometheus_client', 'jupyterhub', 'kubespawner', 'oauthenticator'):\n"
        "    sys.modules[banned] = None\n"
        "import hub_config.kube, hub_config.dask.gateway\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
