"""Spawn-page render time with many profiles: our per-request form vs stock KubeSpawner's.

What the spawn page costs beyond JupyterHub's own page: KubeSpawner renders its profile form
(``form.html``) from a ``profile_list``; we render ours (``hub_config/templates/spawn_form.html``,
compact cards) from the same list. Ours is a callable (group filter, hot reload), so every page view
computes the user's list and renders it; stock KubeSpawner with a static list renders its template
once per spawner object. Both are timed here in one process on the same 50 profiles
(ours: ``_render_options_form_dynamically``, cached per group set and uncached; baseline:
``_render_options_form`` on the equivalent static list), interleaved, many iterations each.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml
from kubespawner import KubeSpawner
from traitlets.config import Config

from hub_config.profiles.kubespawner import profile_list_for
from hub_config.profiles.source import ProfileSource
from hub_config.settings.model import Settings
from hub_config.spawn_form import _FORM_HTML
from hub_config.spawner import DatalakeSpawner, apply_spawner

from ..stack import BENCH_DIR
from ..stats import ratio, summary

__all__ = ["make_profiles", "render"]

REPO = BENCH_DIR.parent
GROUPS = ["escape", "escape/gpu"]


def make_profiles(target: Path, count: int) -> None:
    """``count`` profiles: the shipped ones cycled, each copy with its own slug and order."""
    shipped = sorted((REPO / "profiles").glob("*.yaml"))
    target.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        data = yaml.safe_load(shipped[i % len(shipped)].read_text())
        data["slug"] = f"{data['slug']}-{i:02d}"
        data["order"] = i
        data["default"] = i == 0
        data["display_name"] = f"{data['display_name']} #{i}"
        (target / f"{data['slug']}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def _settings(profiles_dir: Path) -> Settings:
    data = Settings.from_file(REPO / "tests" / "data" / "settings" / "reference.yaml").model_dump()
    data["profiles"] = {"directory": str(profiles_dir)}
    return Settings.model_validate(data)


def _offline_kubeconfig(path: Path) -> str:
    """KubeSpawner reads a kubeconfig when built; nothing here calls the API."""
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: unused}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    return str(path)


def render(count: int = 50, iterations: int = 300) -> dict[str, Any]:
    """Median/p95 milliseconds per form render, ours and baseline, and their ratio."""
    import kubernetes_asyncio.config.kube_config as kc

    tmp = Path(tempfile.mkdtemp(prefix="bench-render-"))
    try:
        kc.KUBE_CONFIG_DEFAULT_LOCATION = _offline_kubeconfig(tmp / "kubeconfig")
        make_profiles(tmp / "profiles", count)
        settings = _settings(tmp / "profiles")
        return asyncio.run(_build_and_time(settings, iterations))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def _build_and_time(settings: Settings, iterations: int) -> dict[str, Any]:
    """Spawners are built inside the loop: KubeSpawner binds its API client to the running loop."""
    source = ProfileSource(settings)
    source.load_initial()
    c = Config()
    apply_spawner(c, settings, source)
    ours = DatalakeSpawner(_mock=True, config=c)
    ours.user.groups = [SimpleNamespace(name=g) for g in GROUPS]
    static = profile_list_for(source.current(), settings, GROUPS)
    stock = KubeSpawner(_mock=True, profile_list=static)
    return await _time(ours, stock, static, iterations) | {"profiles": len(static)}


async def _time(ours: Any, stock: Any, static: list[dict[str, Any]], iterations: int) -> dict[str, Any]:
    """Interleaved: ours as page views see it (the form cached per group set), ours uncached
    (the first view after a profile edit, or of a new group set), and stock KubeSpawner."""
    timings: dict[str, list[float]] = {"ours": [], "ours_cold": [], "baseline": []}
    html = {"ours": await ours._render_options_form_dynamically(ours), "baseline": stock._render_options_form(static)}
    for _ in range(iterations):
        t = time.perf_counter()
        await ours._render_options_form_dynamically(ours)
        timings["ours"].append((time.perf_counter() - t) * 1000)
        _FORM_HTML.pop(ours.datalake_profiles, None)
        t = time.perf_counter()
        await ours._render_options_form_dynamically(ours)
        timings["ours_cold"].append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        stock._render_options_form(static)
        timings["baseline"].append((time.perf_counter() - t) * 1000)
    list_only = []
    for _ in range(iterations):
        t = time.perf_counter()
        await ours.datalake_profile_list()
        list_only.append((time.perf_counter() - t) * 1000)
    out: dict[str, Any] = {k: summary(v, 3) for k, v in timings.items()}
    out["ours_profile_list_ms"] = summary(list_only, 3)
    out["ratio_median"] = ratio(out["ours"]["median"], out["baseline"]["median"])
    out["ratio_p95"] = ratio(out["ours"]["p95"], out["baseline"]["p95"])
    out["ratio_cold_median"] = ratio(out["ours_cold"]["median"], out["baseline"]["median"])
    out["html_bytes"] = {k: len(v) for k, v in html.items()}
    return out
