"""The console summary of one run: this run's figures against their targets, and what failed.

Targets are the issue's (#20): ratios to the stock hub measured in the same run, except where the
stock hub has no equivalent (render time, rotation cost).
"""

from __future__ import annotations

from typing import Any

__all__ = ["STOCK_FAILURE_SHARE", "TARGETS", "failures", "print_older", "print_summary", "stock_failures"]

TARGETS = {
    "storm_p95_ratio": 1.05,
    "restart_ratio": 1.10,
    "memory_ratio": 1.05,
    "logins_ratio_auth_state": 1.0,
    "k8s_writes_per_user_per_lifetime": 2.0,
    "rotation_cpu_share": 0.05,
    "render_ms": 5.0,
    "dask_ratio": 1.10,
}


def _mark(ok: bool | None) -> str:
    return "n/a" if ok is None else ("MET" if ok else "MISSED")


def _at_most(value: float | None, target: float) -> str:
    return _mark(None if value is None else value <= target)


STOCK_FAILURE_SHARE = 0.05
"""Spawns the stock hub may fail in a storm round that still counts (see :func:`stock_failures`)."""


def _spawn_problem(size: str, kind: str, run: dict[str, Any]) -> str:
    return f"storm {size}, {kind}: {run['ready']} of {run['users']} servers ready; failures {run['failures']}"


def _stock_spawns_failed_within_share(run: dict[str, Any]) -> bool:
    missing = run["users"] - run["ready"]
    return 0 < missing <= STOCK_FAILURE_SHARE * run["users"]


def stock_failures(results: dict[str, dict[str, Any]]) -> list[str]:
    """Storm rounds in which the stock hub itself failed a few spawns: a finding, not a broken run.

    At 300 concurrent spawns on the 2-core machine the stock hub loses some pods to KubeSpawner's
    own API timeouts ("Could not create pod" after its 30 s retry window), the failure mode the
    issue cites from Rubin's hub. Such a round still compares the hubs: the stock hub's latencies
    are over the servers that became ready (its failed ones, excluded, would only have raised its
    p95). Ours failing anything, or the stock hub failing more than 5 % (a broken set-up, such as
    pods that cannot find what they run), still fails the run.
    """
    out: list[str] = []
    for size, r in results.get("storm", {}).get("rounds", {}).items():
        run = r.get("baseline")
        if run and _stock_spawns_failed_within_share(run):
            out.append(_spawn_problem(size, "baseline", run) + " (the stock hub's own failures; figures over the rest)")
    return out


def failures(results: dict[str, dict[str, Any]]) -> list[str]:
    """What went wrong in this run's rounds: spawns not ready, failed logins, rotations, restarts."""
    out: list[str] = []
    for size, r in results.get("storm", {}).get("rounds", {}).items():
        for kind in ("ours", "baseline"):
            run = r.get(kind)
            if not run or not (run["failures"] or run["ready"] < run["users"]):
                continue
            if kind == "baseline" and _stock_spawns_failed_within_share(run):
                continue  # reported by stock_failures
            out.append(_spawn_problem(size, kind, run))
            if run and (run.get("before_start") or {}).get("errors"):
                out.append(f"storm {size}, {kind}: page views before Start failed: {run['before_start']['errors']}")
    for kind, r in results.get("logins", {}).items():
        if isinstance(r, dict) and "logins_per_s" in r and (r["failures"] or not r["logins"]):
            out.append(f"logins, {kind}: {r['logins']} logins, failures {r['failures']}")
    rotation = results.get("rotation", {})
    if rotation.get("rotation_failures"):
        out.append(f"rotation: failures {rotation['rotation_failures']}")
    for i, r in enumerate(results.get("restart", {}).get("rounds", []), 1):
        for problem in r["problems"]:
            out.append(f"restart round {i}, {r['kind']}: {problem}")
    return out


def print_older(everything: dict[str, dict[str, Any]], current: set[str]) -> None:
    """Scenarios this run did not measure: where their (older) figures are, and from when."""
    for name in sorted(set(everything) - current):
        meta = everything[name].get("machine", {})
        print(
            f"not run now: {name} — results/{name}.json holds figures from {meta.get('date', 'an unknown date')}"
            f" (commit {meta.get('commit', '?')}), not shown"
        )


def print_summary(results: dict[str, dict[str, Any]]) -> None:
    date = next((r["machine"]["date"] for r in results.values() if "machine" in r), None)
    print(f"\n=== datalake-hub benchmarks (ours vs plain baseline, this run{f', {date}' if date else ''}) ===")
    if not results:
        print("no scenario produced figures in this run")
    if "storm" in results:
        print(results["storm"]["note"])
        if results["storm"].get("page_view"):
            print(results["storm"]["page_view"])
        for size, r in results["storm"]["rounds"].items():
            o, b = r["ours"], r["baseline"]
            oo, bb = o["accepted_to_ready_s"], b["accepted_to_ready_s"]
            print(
                f"storm {size:>4}: ready median/p95 ours {oo['median']}/{oo['p95']} s, baseline {bb['median']}/"
                f"{bb['p95']} s, p95 ratio {r['ratio_p95_ready']} (target ≤ {TARGETS['storm_p95_ratio']}: "
                f"{_at_most(r['ratio_p95_ready'], TARGETS['storm_p95_ratio'])}), median ratio "
                f"{r['ratio_median_ready']}; ready ours {o['ready']}/{o['users']} baseline {b['ready']}/{b['users']}"
                f"; 429s ours {o['rejected_429']} baseline {b['rejected_429']}; failures ours "
                f"{o['failures'] or 'none'} baseline {b['failures'] or 'none'}"
            )
    if "memory" in results:
        m = results["memory"]
        print(
            f"hub RSS: ours {m['ours']['rss_mb']} MB, baseline {m['baseline']['rss_mb']} MB "
            f"({m['ours']['users']} users, running ours {m['ours']['running_servers']} baseline "
            f"{m['baseline']['running_servers']}), ratio {m['ratio']} "
            f"(target ≤ {TARGETS['memory_ratio']}: {_at_most(m['ratio'], TARGETS['memory_ratio'])})"
        )
    if "restart" in results:
        r = results["restart"]
        o, b = r["ours"], r["baseline"]
        print(
            f"restart ({o['running_servers']} running, {o['health_s']['n']} rounds each, medians): /hub/health ours "
            f"{o['health_s']['median']} s baseline {b['health_s']['median']} s, ratio {r['ratio_health_s']} "
            f"({_at_most(r['ratio_health_s'], TARGETS['restart_ratio'])}); every server checked (ours: rotation "
            f"scheduled) ours {o['spawners_checked_s']['median']} s baseline {b['spawners_checked_s']['median']} s, "
            f"ratio {r['ratio_spawners_checked_s']} "
            f"({_at_most(r['ratio_spawners_checked_s'], TARGETS['restart_ratio'])}; target ≤ "
            f"{TARGETS['restart_ratio']}); ours: every Secret rotated again at {o['rotated_all_s']['median']} s"
        )
    if "render" in results:
        r = results["render"]
        print(
            f"spawn form, {r['profiles']} profiles: ours median/p95 {r['ours']['median']}/{r['ours']['p95']} ms "
            f"(uncached: first view per group set or after a profile edit, "
            f"median {r.get('ours_cold', r['ours'])['median']} ms), "
            f"baseline {r['baseline']['median']}/{r['baseline']['p95']} ms, ratio {r['ratio_median']} "
            f"(target ≤ {TARGETS['render_ms']} ms: {_at_most(r['ours']['median'], TARGETS['render_ms'])})"
        )
    if "logins" in results:
        r = results["logins"]
        with_state = r.get("ratio_to_baseline_auth_state")
        print(
            f"logins/s ({r['clients']} clients): ours {r['ours']['logins_per_s']}, "
            f"baseline with auth state {r.get('baseline-auth-state', {}).get('logins_per_s', 'n/a')}, "
            f"ratio {with_state} (target ≥ {TARGETS['logins_ratio_auth_state']}: "
            f"{_mark(None if with_state is None else with_state >= TARGETS['logins_ratio_auth_state'])}); "
            f"baseline without auth state {r['baseline']['logins_per_s']}, ratio {r['ratio']}; hub CPU per login "
            f"ours {r['ours'].get('hub_cpu_ms_per_login')} ms, baseline with auth state "
            f"{r.get('baseline-auth-state', {}).get('hub_cpu_ms_per_login')} ms "
            f"(ratio {r.get('cpu_ratio_to_baseline_auth_state')})"
        )
    if "rotation" in results:
        r = results["rotation"]
        print(
            f"rotation ({r['sessions']} sessions, ttl {r['ttl_s']} s): k8s writes/user/lifetime "
            f"{r['k8s_writes_per_user_per_lifetime']} (target ≤ 2: "
            f"{_at_most(r['k8s_writes_per_user_per_lifetime'], TARGETS['k8s_writes_per_user_per_lifetime'])}), "
            f"IdP calls/user/lifetime {r['idp_calls_per_user_per_lifetime']}, CPU {r['cpu_share_of_core'] * 100:.1f}% "
            f"of a core (target ≤ 5%: {_at_most(r['cpu_share_of_core'], TARGETS['rotation_cpu_share'])}), "
            f"lag median/p95 {r['rotation_lag_s']['median']}/{r['rotation_lag_s']['p95']} s"
        )
    _print_dask(results)


def _print_dask(results: dict[str, dict[str, Any]]) -> None:
    """new_cluster() → N workers, ours against stock, and Secret writes with workers running."""
    if "dask" not in results:
        return
    r = results["dask"]
    for n, t in r["time_to_workers"].items():
        print(
            f"dask new_cluster() → {n} workers: median ours {t['ours_s']['median']} s, "
            f"stock {t['stock_s']['median']} s, ratio {t['ratio_median']} "
            f"(target ≤ {TARGETS['dask_ratio']}: {_at_most(t['ratio_median'], TARGETS['dask_ratio'])})"
        )
    w = r["secret_writes"]
    print(
        f"dask Secret writes/user/lifetime: without workers {w['without_workers']['per_lifetime']}, "
        f"with {w['with_workers']['worker_pods']} workers {w['with_workers']['per_lifetime']} "
        f"(target unchanged: {_mark(w['with_workers']['writes'] == w['without_workers']['writes'])})"
    )
