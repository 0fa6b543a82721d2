"""Results out: one JSON per scenario, a PNG chart, and a console table with targets."""

from __future__ import annotations

import json
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["RESULTS", "chart", "load_all", "machine", "write"]

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """What the figures were measured on (they mean little without it)."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kib = 0
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
        rev = commit.stdout.strip() or None
    except OSError:
        rev = None
    import os

    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ"),
        "nproc": os.cpu_count(),
        "mem_gib": round(mem_kib / 1024 / 1024, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "commit": rev,
    }


def write(name: str, data: dict[str, Any]) -> Path:
    """``results/<name>.json``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


def load_all() -> dict[str, dict[str, Any]]:
    """Every scenario's latest JSON in ``results/`` (a partial run keeps the others' figures)."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}


Panel = tuple[str, list[str], list[float | None], list[float | None], str]
"""One bar chart: title, bar labels, our values, the baseline's (None: no baseline), x-axis label."""


def _panels(results: dict[str, dict[str, Any]], current: set[str] | None = None) -> list[Panel]:
    """One panel per scenario that has results, in a fixed order; titles of scenarios not in
    ``current`` (figures from an earlier run) say from when."""
    panels: list[Panel] = []
    storm = results.get("storm", {}).get("rounds", {})
    if storm:
        sizes = sorted(storm, key=int)
        panels.append(
            (
                "Spawn storm: p95 accepted→ready (s)",
                sizes,
                [storm[s]["ours"]["accepted_to_ready_s"]["p95"] for s in sizes],
                [storm[s]["baseline"]["accepted_to_ready_s"]["p95"] for s in sizes],
                "users",
            )
        )
    mem = results.get("memory")
    if mem:
        running = f"running: ours {mem['ours']['running_servers']}, base {mem['baseline']['running_servers']}"
        panels.append(
            (
                "Hub RSS (MB)",
                [f"{mem['ours']['users']} users ({running})"],
                [mem["ours"]["rss_mb"]],
                [mem["baseline"]["rss_mb"]],
                "",
            )
        )
    restart = results.get("restart")
    if restart:
        panels.append(
            (
                f"Hub restart, {restart['ours']['running_servers']} running: median (s)",
                ["/hub/health", "all servers checked"],
                [restart["ours"]["health_s"]["median"], restart["ours"]["spawners_checked_s"]["median"]],
                [restart["baseline"]["health_s"]["median"], restart["baseline"]["spawners_checked_s"]["median"]],
                "",
            )
        )
    render = results.get("render")
    if render:
        panels.append(
            (
                "Spawn form render, 50 profiles (ms)",
                ["page view, median", "uncached, median"],
                [render["ours"]["median"], render.get("ours_cold", render["ours"])["median"]],
                [render["baseline"]["median"], render["baseline"]["median"]],
                "",
            )
        )
    logins = results.get("logins")
    if logins:
        panels.append(
            (
                "Logins per second",
                [f"{logins['clients']} clients"],
                [logins["ours"]["logins_per_s"]],
                [logins["baseline"]["logins_per_s"]],
                "",
            )
        )
    rot = results.get("rotation")
    if rot:
        panels.append(
            (
                "Rotation per user per token lifetime",
                ["k8s writes", "IdP calls"],
                [rot["k8s_writes_per_user_per_lifetime"], rot["idp_calls_per_user_per_lifetime"]],
                [None, None],
                "",
            )
        )
    return panels if current is None else _date_older(results, panels, current)


def _date_older(results: dict[str, dict[str, Any]], panels: list[Panel], current: set[str]) -> list[Panel]:
    """Panels of scenarios not in ``current`` get their run's date in the title."""
    present = {"storm": bool(results.get("storm", {}).get("rounds"))}
    order = [
        n
        for n in ("storm", "memory", "restart", "render", "logins", "rotation")
        if present.get(n, bool(results.get(n)))
    ]
    out: list[Panel] = []
    for name, (title, *rest) in zip(order, panels, strict=True):
        if name not in current:
            title = f"{title}\n(older run: {results[name].get('machine', {}).get('date', '?')})"
        out.append((title, *rest))  # type: ignore[arg-type]
    return out


def chart(results: dict[str, dict[str, Any]], current: set[str] | None = None) -> Path | None:
    """``results/summary.png``: ours vs baseline per scenario (None without matplotlib); panels
    from scenarios not in ``current`` are marked with their run's date."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    panels = _panels(results, current)
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    axes = [axes] if len(panels) == 1 else list(axes)
    for ax, (title, labels, ours, base, xlabel) in zip(axes, panels, strict=True):
        xs = range(len(labels))
        ax.bar([x - 0.2 for x in xs], [v or 0 for v in ours], width=0.4, label="ours")
        if any(b is not None for b in base):
            ax.bar([x + 0.2 for x in xs], [b or 0 for b in base], width=0.4, label="baseline")
        ax.set_xticks(list(xs), labels)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.legend(fontsize=8)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "summary.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
