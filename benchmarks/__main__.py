"""`make bench`: every scenario against our hub and a plain baseline, in one run on the local platform.

Scenarios (``SCENARIOS=render,logins,storm,memory,rotation``; all by default) and sizes come from
the environment so a quick run is one line, e.g. ``make bench SCENARIOS=render,logins``. Results
go to ``benchmarks/results/<scenario>.json`` and ``summary.png``; the platform this run started
(state in ``$DATALAKE_BENCH_STATE``) is always brought down at the end, also on failure.

A round in which a spawn, login or rotation failed makes the run exit 1 with the failures on
stderr: its figures would measure a broken hub. The summary prints this run's figures only;
scenarios not run are listed with the date of the figures in ``results/`` (the chart marks them).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from typing import Any

from . import report, stack
from .client import Api
from .stats import ratio

log = logging.getLogger("benchmarks")

ALL = ("render", "logins", "storm", "memory", "rotation")
TARGETS = {
    "storm_p95_ratio": 1.15,
    "k8s_writes_per_user_per_lifetime": 2.0,
    "rotation_cpu_share": 0.05,
    "hub_rss_mb": 250.0,
    "render_ms": 5.0,
    "logins_ratio": 0.95,
    "logins_per_s": 40.0,
}
RESPONDER_NOTE = (
    "Benchmark pods run benchmarks/responder.py (a minimal HTTP 200 responder) instead of jupyterhub-singleuser: "
    "200 real notebook servers do not fit in 2 cores. Spawn times therefore exclude Jupyter's own start-up."
)


class _Results(dict[str, dict[str, Any]]):
    """Scenario results, each written to ``results/<name>.json`` as soon as it is in (a later failure keeps it)."""

    def __setitem__(self, name: str, data: dict[str, Any]) -> None:
        super().__setitem__(name, data)
        report.write(name, data)


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _sizes() -> list[int]:
    return [int(s) for s in os.environ.get("BENCH_STORM_SIZES", "50,100,200").split(",") if s.strip()]


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    wanted = [s.strip() for s in os.environ.get("SCENARIOS", ",".join(ALL)).split(",") if s.strip()]
    unknown = set(wanted) - set(ALL)
    if unknown:
        print(f"unknown scenario(s): {', '.join(sorted(unknown))}; choose from {', '.join(ALL)}", file=sys.stderr)
        return 2
    # A TERM (e.g. from `timeout`) must still bring the platform down: make it an exception.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = _Results()
    problems: list[str] = []
    meta = report.machine()
    if "render" in wanted:
        from .scenarios.render import render

        log.info("render: 50 profiles")
        results["render"] = {"machine": meta, **render(50, _env_int("BENCH_RENDER_ITERATIONS", 300))}
    if set(wanted) & {"logins", "storm", "memory", "rotation"}:
        root = stack.state()
        try:
            _platform_scenarios(root, wanted, results, meta, problems)
        finally:
            log.info("bringing the benchmark platform down")
            stack.tear_down(root)
    everything = report.load_all()
    png = report.chart(everything, current=set(results))
    _print_summary(dict(results))
    _print_older(everything, set(results))
    if png:
        print(f"\nchart: {png}")
    problems += failures(results)
    if problems:
        print(
            "\n*** BENCHMARK RUN FAILED: these rounds did not complete; their figures are not valid ***",
            file=sys.stderr,
        )
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    return 0


def failures(results: dict[str, dict[str, Any]]) -> list[str]:
    """What went wrong in this run's rounds: spawns not ready, failed logins, failed rotations."""
    out: list[str] = []
    for size, r in results.get("storm", {}).get("rounds", {}).items():
        for kind in ("ours", "baseline"):
            run = r.get(kind)
            if run and (run["failures"] or run["ready"] < run["users"]):
                out.append(
                    f"storm {size}, {kind}: {run['ready']} of {run['users']} servers ready; failures {run['failures']}"
                )
    for kind, r in results.get("logins", {}).items():
        if isinstance(r, dict) and "logins_per_s" in r and (r["failures"] or not r["logins"]):
            out.append(f"logins, {kind}: {r['logins']} logins, failures {r['failures']}")
    rotation = results.get("rotation", {})
    if rotation.get("rotation_failures"):
        out.append(f"rotation: failures {rotation['rotation_failures']}")
    return out


def _print_older(everything: dict[str, dict[str, Any]], current: set[str]) -> None:
    """Scenarios this run did not measure: where their (older) figures are, and from when."""
    for name in sorted(set(everything) - current):
        meta = everything[name].get("machine", {})
        print(
            f"not run now: {name} — results/{name}.json holds figures from {meta.get('date', 'an unknown date')}"
            f" (commit {meta.get('commit', '?')}), not shown"
        )


def _platform_scenarios(
    root: Any, wanted: list[str], results: dict[str, dict[str, Any]], meta: dict[str, Any], problems: list[str]
) -> None:
    sizes = _sizes()
    rot_sessions = _env_int("BENCH_ROTATION_SESSIONS", 1000)
    storm_users = max([*sizes, _env_int("BENCH_LOGIN_USERS", 64)])
    info = stack.bring_up(root, storm_users + rot_sessions)
    all_users = stack.bench_users(storm_users + rot_sessions)
    ca = stack.client_ca(info)
    if set(wanted) & {"logins", "storm", "memory"}:
        from .scenarios.logins import login_rate

        hubs = {kind: stack.start_bench_hub(root, info, kind) for kind in ("ours", "baseline")}
        apis = {kind: Api(h.api_url, h.service_token) for kind, h in hubs.items()}
        creds = [(u["username"], u["password"]) for u in all_users[:storm_users]]
        if "logins" in wanted:
            clients = _env_int("BENCH_LOGIN_CLIENTS", 8)
            log.info("logins: %d clients", clients)
            reference = stack.start_bench_hub(root, info, "baseline-auth-state")
            rates = login_rate(
                {**{k: h.url for k, h in hubs.items()}, "baseline-auth-state": reference.url},
                ca,
                creds[: _env_int("BENCH_LOGIN_USERS", 64)],
                clients=clients,
                seconds=_env_int("BENCH_LOGIN_SECONDS", 10),
                slices=_env_int("BENCH_LOGIN_SLICES", 2),
            )
            stack.stop_bench_hub(root, "baseline-auth-state")
            results["logins"] = {
                "machine": meta,
                "clients": clients,
                **rates,
                "ratio": ratio(rates["ours"]["logins_per_s"], rates["baseline"]["logins_per_s"]),
                "ratio_to_baseline_auth_state": ratio(
                    rates["ours"]["logins_per_s"], rates["baseline-auth-state"]["logins_per_s"]
                ),
            }
        if set(wanted) & {"storm", "memory"}:
            _storms(root, info, hubs, apis, creds, sizes, wanted, results, meta, problems)
        for kind in hubs:
            stack.stop_bench_hub(root, kind)
    if "rotation" in wanted:
        from .scenarios.rotation import rotation

        ttl = _env_int("BENCH_ROTATION_TTL", 240)
        log.info("rotation: %d sessions, token lifetime %ds", rot_sessions, ttl)
        results["rotation"] = {
            "machine": meta,
            "baseline": "none: stock KubeSpawner + GenericOAuthenticator never rotate tokens into running servers",
            **rotation(
                info,
                all_users[storm_users:],
                ttl=ttl,
                margin=_env_int("BENCH_ROTATION_MARGIN", 60),
                interval=_env_int("BENCH_ROTATION_INTERVAL", 10),
                window=float(_env_int("BENCH_ROTATION_WINDOW", ttl)),
            ),
        }


def _storms(
    root: Any,
    info: dict[str, Any],
    hubs: dict[str, Any],
    apis: dict[str, Api],
    creds: list[tuple[str, str]],
    sizes: list[int],
    wanted: list[str],
    results: dict[str, dict[str, Any]],
    meta: dict[str, Any],
    problems: list[str],
) -> None:
    from .scenarios.logins import login_users
    from .scenarios.memory import hub_memory
    from .scenarios.storm import cleanup, storm

    kube = stack.Kube(info)
    ca = stack.client_ca(info)
    for kind, hub in hubs.items():  # our hub provisions Rucio from the user's tokens: users log in first
        failed = login_users(hub.url, ca, creds[: max(sizes)])
        log.info("%s: %d users logged in (%d failed)", kind, max(sizes) - failed, failed)
        if failed:
            problems.append(f"storm set-up, {kind}: {failed} of {max(sizes)} users could not log in")
    print(RESPONDER_NOTE)
    options = {"ours": {"profile": "bench"}, "baseline": {}}
    prefixes = {"ours": "jupyter-", "baseline": "baseline-"}
    rounds: dict[str, dict[str, Any]] = {}
    memory: dict[str, Any] = {}
    for i, size in enumerate(sizes):
        order = ["ours", "baseline"] if i % 2 == 0 else ["baseline", "ours"]
        rounds[str(size)] = {}
        for kind in order:
            names = [n for n, _ in creds[:size]]
            log.info("storm: %s, %d users", kind, size)
            rounds[str(size)][kind] = storm(
                apis[kind],
                kube,
                users=names,
                options=options[kind],
                pod_prefix=prefixes[kind],
                timeout=float(_env_int("BENCH_STORM_TIMEOUT", 420)),
            )
            if "memory" in wanted and size == max(sizes):
                memory[kind] = hub_memory(
                    apis[kind], stack.hub_pid(root, kind), total_users=_env_int("BENCH_MEMORY_USERS", 1000)
                )
            rounds[str(size)][kind]["orphaned_pods"] = cleanup(apis[kind], kube, names)
            time.sleep(2)
        ours, base = rounds[str(size)]["ours"], rounds[str(size)]["baseline"]
        rounds[str(size)]["ratio_p95_ready"] = ratio(
            ours["accepted_to_ready_s"]["p95"], base["accepted_to_ready_s"]["p95"]
        )
        rounds[str(size)]["ratio_median_ready"] = ratio(
            ours["accepted_to_ready_s"]["median"], base["accepted_to_ready_s"]["median"]
        )
    if "storm" in wanted:
        results["storm"] = {"machine": meta, "note": RESPONDER_NOTE, "rounds": rounds}
    if memory:
        results["memory"] = {
            "machine": meta,
            **memory,
            "ratio": ratio(memory["ours"]["rss_mb"], memory["baseline"]["rss_mb"]),
        }


def _mark(ok: bool | None) -> str:
    return "n/a" if ok is None else ("MET" if ok else "MISSED")


def _print_summary(results: dict[str, dict[str, Any]]) -> None:
    date = next((r["machine"]["date"] for r in results.values() if "machine" in r), None)
    print(f"\n=== datalake-hub benchmarks (ours vs plain baseline, this run{f', {date}' if date else ''}) ===")
    if not results:
        print("no scenario produced figures in this run")
    if "storm" in results:
        print(results["storm"]["note"])
        for size, r in results["storm"]["rounds"].items():
            o, b = r["ours"], r["baseline"]
            fails = dict(o["failures"])
            oo = o["accepted_to_ready_s"]
            print(
                f"storm {size:>4}: ready median/p95 ours {oo['median']}/{oo['p95']} s"
                f", baseline {b['accepted_to_ready_s']['median']}/{b['accepted_to_ready_s']['p95']} s"
                f", p95 ratio {r['ratio_p95_ready']} (target ≤ {TARGETS['storm_p95_ratio']}: "
                f"{_mark(r['ratio_p95_ready'] is not None and r['ratio_p95_ready'] <= TARGETS['storm_p95_ratio'])})"
                f"; 429s ours {o['rejected_429']} baseline {b['rejected_429']}; failures ours {fails or 'none'}"
                f" baseline {b['failures'] or 'none'}"
            )
    if "memory" in results:
        m = results["memory"]
        print(
            f"hub RSS: ours {m['ours']['rss_mb']} MB, baseline {m['baseline']['rss_mb']} MB "
            f"({m['ours']['users']} users, {m['ours']['running_servers']} running), ratio {m['ratio']} "
            f"(target ≤ {TARGETS['hub_rss_mb']:.0f} MB: {_mark(m['ours']['rss_mb'] <= TARGETS['hub_rss_mb'])})"
        )
    if "render" in results:
        r = results["render"]
        print(
            f"spawn form, {r['profiles']} profiles: ours median/p95 {r['ours']['median']}/{r['ours']['p95']} ms "
            f"(uncached: first view per group set or after a profile edit, "
            f"median {r.get('ours_cold', r['ours'])['median']} ms), "
            f"baseline {r['baseline']['median']}/{r['baseline']['p95']} ms, ratio {r['ratio_median']} "
            f"(target ≤ {TARGETS['render_ms']} ms: {_mark(r['ours']['median'] <= TARGETS['render_ms'])})"
        )
    if "logins" in results:
        r = results["logins"]
        ok = r["ratio"] is not None and r["ratio"] >= TARGETS["logins_ratio"]
        print(
            f"logins/s ({r['clients']} clients): ours {r['ours']['logins_per_s']}, "
            f"baseline {r['baseline']['logins_per_s']}, "
            f"baseline with auth state {r.get('baseline-auth-state', {}).get('logins_per_s', 'n/a')}, "
            f"ratio {r['ratio']} (target ≥ {TARGETS['logins_ratio']}×: {_mark(ok)}; "
            f"≥ {TARGETS['logins_per_s']:.0f}/s: {_mark(r['ours']['logins_per_s'] >= TARGETS['logins_per_s'])})"
        )
    if "rotation" in results:
        r = results["rotation"]
        print(
            f"rotation ({r['sessions']} sessions, ttl {r['ttl_s']} s): k8s writes/user/lifetime "
            f"{r['k8s_writes_per_user_per_lifetime']} (target ≤ 2: "
            f"{_mark(r['k8s_writes_per_user_per_lifetime'] <= TARGETS['k8s_writes_per_user_per_lifetime'])}), "
            f"IdP calls/user/lifetime {r['idp_calls_per_user_per_lifetime']}, CPU {r['cpu_share_of_core'] * 100:.1f}% "
            f"of a core (target ≤ 5%: {_mark(r['cpu_share_of_core'] <= TARGETS['rotation_cpu_share'])}), "
            f"lag median/p95 {r['rotation_lag_s']['median']}/{r['rotation_lag_s']['p95']} s"
        )


if __name__ == "__main__":
    sys.exit(main())
