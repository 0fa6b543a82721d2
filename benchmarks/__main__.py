"""`make bench`: every scenario against our hub and a plain baseline, in one run on the local platform.

Scenarios (``SCENARIOS=render,logins,storm,memory,restart,rotation``; all by default) and sizes come
from the environment so a quick run is one line, e.g. ``make bench SCENARIOS=render,logins``.
Results go to ``benchmarks/results/<scenario>.json`` and ``summary.png``; the platform this run
started (state in ``$DATALAKE_BENCH_STATE``) is always brought down at the end, also on failure.

A round in which a spawn, login, rotation or restart failed (or a scenario that crashed) makes the
run exit 1 with the failures on stderr: its figures would measure a broken hub. The summary prints
this run's figures only; scenarios not run are listed with the date of the figures in
``results/`` (the chart marks them).
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
from .summary import failures, print_older, print_summary, stock_failures

log = logging.getLogger("benchmarks")

ALL = ("render", "logins", "storm", "memory", "restart", "rotation", "dask")
RESPONDER_NOTE = (
    "Benchmark pods run benchmarks/responder.py (a minimal HTTP 200 responder) instead of jupyterhub-singleuser: "
    "200 real notebook servers do not fit in 2 cores. Spawn times therefore exclude Jupyter's own start-up."
)
PAGE_NOTE = (
    "Before each storm round every user signs in and opens the page a user sees before Start: ours "
    "its spawn page (our hub exchanges the user's Rucio tokens in the background when it shows it), "
    "the stock hub its home page (it has no options form: its Start spawns at once); then BENCH_STORM_THINK "
    "seconds (choosing), then Start. Latencies run from Start."
)
OPTIONS = {"ours": {"profile": "bench"}, "baseline": {}}
PREFIXES = {"ours": "jupyter-", "baseline": "baseline-"}


class _Results(dict[str, dict[str, Any]]):
    """Scenario results, each written to ``results/<name>.json`` as soon as it is in (a later failure keeps it)."""

    def __setitem__(self, name: str, data: dict[str, Any]) -> None:
        super().__setitem__(name, data)
        report.write(name, data)


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _sizes() -> list[int]:
    return [int(s) for s in os.environ.get("BENCH_STORM_SIZES", "50,100,200,300").split(",") if s.strip()]


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
    if set(wanted) - {"render"}:
        root = stack.state()
        try:
            _platform_scenarios(root, wanted, results, meta, problems)
        except Exception as err:  # reported below with what did complete; the run exits 1
            log.exception("benchmark scenario crashed")
            problems.append(f"a scenario crashed: {type(err).__name__}: {err}")
        finally:
            log.info("bringing the benchmark platform down")
            stack.tear_down(root)
    everything = report.load_all()
    png = report.chart(everything, current=set(results))
    print_summary(dict(results))
    print_older(everything, set(results))
    if png:
        print(f"\nchart: {png}")
    for finding in stock_failures(results):
        print(f"\nNOTE: {finding}")
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


def _platform_scenarios(
    root: Any, wanted: list[str], results: dict[str, dict[str, Any]], meta: dict[str, Any], problems: list[str]
) -> None:
    sizes = _sizes() if "storm" in wanted else []
    running = _env_int("BENCH_RUNNING", 200) if set(wanted) & {"memory", "restart"} else 0
    rot_sessions = _env_int("BENCH_ROTATION_SESSIONS", 1000) if "rotation" in wanted else 0
    hub_users = max([*sizes, running, _env_int("BENCH_LOGIN_USERS", 64)])
    info = stack.bring_up(root, hub_users + rot_sessions)
    all_users = stack.bench_users(hub_users + rot_sessions)
    if set(wanted) & {"logins", "storm", "memory", "restart"}:
        hubs = {kind: stack.start_bench_hub(root, info, kind) for kind in ("ours", "baseline")}
        apis = {kind: Api(h.api_url, h.service_token) for kind, h in hubs.items()}
        creds = [(u["username"], u["password"]) for u in all_users[:hub_users]]
        # Restart and storm first: the priorities, should a run have to be cut short.
        if sizes or running:
            _log_in(info, hubs, creds[: max([*sizes, running])], problems)
            print(RESPONDER_NOTE)
        if running:
            _with_running_servers(root, info, apis, [n for n, _ in creds[:running]], wanted, results, meta, problems)
        if sizes:
            rounds = _storms(info, hubs, apis, creds, sizes)
            results["storm"] = {"machine": meta, "note": RESPONDER_NOTE, "page_view": PAGE_NOTE, "rounds": rounds}
        if "logins" in wanted:
            results["logins"] = {"machine": meta, **_logins(root, info, hubs, creds)}
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
                all_users[hub_users:],
                ttl=ttl,
                margin=_env_int("BENCH_ROTATION_MARGIN", 60),
                interval=_env_int("BENCH_ROTATION_INTERVAL", 10),
                window=float(_env_int("BENCH_ROTATION_WINDOW", ttl)),
            ),
        }
    if "dask" in wanted:
        from .scenarios.dask import dask_clusters

        rounds = _env_int("BENCH_DASK_ROUNDS", 3)
        log.info("dask: %d alternating rounds, 2 and 4 workers", rounds)
        results["dask"] = {
            "machine": meta,
            "baseline": "stock dask-gateway KubeBackend (defaults; dask scheduler/worker commands), same image",
            **dask_clusters(
                root,
                info,
                sizes=(2, 4),
                rounds=rounds,
                lifetime=float(_env_int("BENCH_DASK_LIFETIME", 30)),
                lifetimes=_env_int("BENCH_DASK_LIFETIMES", 4),
            ),
        }


def _logins(root: Any, info: dict[str, Any], hubs: dict[str, Any], creds: list[tuple[str, str]]) -> dict[str, Any]:
    """logins/s of ours, the baseline, and the baseline with auth state on (what ours must store)."""
    from .scenarios.logins import login_rate

    clients = _env_int("BENCH_LOGIN_CLIENTS", 8)
    log.info("logins: %d clients", clients)
    reference = stack.start_bench_hub(root, info, "baseline-auth-state")
    rates = login_rate(
        {**{k: h.url for k, h in hubs.items()}, "baseline-auth-state": reference.url},
        stack.client_ca(info),
        creds[: _env_int("BENCH_LOGIN_USERS", 64)],
        clients=clients,
        seconds=_env_int("BENCH_LOGIN_SECONDS", 10),
        slices=_env_int("BENCH_LOGIN_SLICES", 2),
        pids={kind: stack.hub_pid(root, kind) for kind in (*hubs, "baseline-auth-state")},
    )
    stack.stop_bench_hub(root, "baseline-auth-state")
    return {
        "clients": clients,
        **rates,
        "ratio": ratio(rates["ours"]["logins_per_s"], rates["baseline"]["logins_per_s"]),
        "ratio_to_baseline_auth_state": ratio(
            rates["ours"]["logins_per_s"], rates["baseline-auth-state"]["logins_per_s"]
        ),
        "cpu_ratio_to_baseline_auth_state": ratio(
            rates["ours"]["hub_cpu_ms_per_login"], rates["baseline-auth-state"]["hub_cpu_ms_per_login"]
        ),
    }


def _log_in(info: dict[str, Any], hubs: dict[str, Any], creds: list[tuple[str, str]], problems: list[str]) -> None:
    """Every user who will get a server signs in once at each hub (ours provisions Rucio from their tokens)."""
    from .scenarios.logins import login_users

    for kind, hub in hubs.items():
        failed = login_users(hub.url, stack.client_ca(info), creds)
        log.info("%s: %d users logged in (%d failed)", kind, len(creds) - failed, failed)
        if failed:
            problems.append(f"set-up, {kind}: {failed} of {len(creds)} users could not log in")


def _storms(
    info: dict[str, Any], hubs: dict[str, Any], apis: dict[str, Api], creds: list[tuple[str, str]], sizes: list[int]
) -> dict[str, Any]:
    """One round per size, hubs in alternating order; every server stopped after its hub's round.

    Before a round, each user opens the page a user sees before Start (see ``PAGE_NOTE``), unless
    ``BENCH_STORM_PAGE_VIEW=0``; the round's clock starts at Start.
    """
    from .client import open_page
    from .scenarios.storm import before_start, cleanup, storm

    kube = stack.Kube(info)
    passwords = dict(creds)
    pages = {"ours": "spawn/{name}", "baseline": "home"}
    think = float(_env_int("BENCH_STORM_THINK", 5))
    rounds: dict[str, dict[str, Any]] = {}
    for i, size in enumerate(sizes):
        order = ["ours", "baseline"] if i % 2 == 0 else ["baseline", "ours"]
        rounds[str(size)] = {}
        names = [n for n, _ in creds[:size]]
        for kind in order:
            viewed = None
            if _env_int("BENCH_STORM_PAGE_VIEW", 1):
                log.info("storm: %s, %d users open %s", kind, size, pages[kind])
                viewed = before_start(
                    lambda n, k=kind: open_page(
                        hubs[k].url, stack.client_ca(info), n, passwords[n], pages[k].format(name=n)
                    ),
                    names,
                    think,
                )
            log.info("storm: %s, %d users", kind, size)
            rounds[str(size)][kind] = storm(
                apis[kind],
                kube,
                users=names,
                options=OPTIONS[kind],
                pod_prefix=PREFIXES[kind],
                timeout=float(_env_int("BENCH_STORM_TIMEOUT", 420)),
            )
            rounds[str(size)][kind]["before_start"] = viewed
            if kind == "ours":  # how many Starts took a token exchanged ahead (counters since the hub started)
                rounds[str(size)][kind]["spawn_token_exchanges"] = apis[kind].metric(
                    "datalake_hub_spawn_token_exchanges_total"
                )
            rounds[str(size)][kind]["orphaned_pods"] = cleanup(apis[kind], kube, names)
            time.sleep(2)
        ours, base = rounds[str(size)]["ours"], rounds[str(size)]["baseline"]
        for stat in ("p95", "median"):
            rounds[str(size)][f"ratio_{stat}_ready"] = ratio(
                ours["accepted_to_ready_s"][stat], base["accepted_to_ready_s"][stat]
            )
    return rounds


def _with_running_servers(
    root: Any,
    info: dict[str, Any],
    apis: dict[str, Api],
    names: list[str],
    wanted: list[str],
    results: dict[str, dict[str, Any]],
    meta: dict[str, Any],
    problems: list[str],
) -> None:
    """Both hubs with ``names``' servers running (1,000 users in all): memory, then restarts."""
    from .scenarios.memory import hub_memory, top_up
    from .scenarios.restart import restart
    from .scenarios.storm import cleanup, storm

    kube = stack.Kube(info)
    started: dict[str, Any] = {}
    for kind in ("ours", "baseline"):
        log.info("starting %d servers on %s", len(names), kind)
        started[kind] = storm(
            apis[kind],
            kube,
            users=names,
            options=OPTIONS[kind],
            pod_prefix=PREFIXES[kind],
            timeout=float(_env_int("BENCH_STORM_TIMEOUT", 420)),
        )
        if started[kind]["ready"] < len(names):
            problems.append(
                f"set-up, {kind}: {started[kind]['ready']} of {len(names)} servers started; "
                f"failures {started[kind]['failures']}"
            )
    try:
        if "memory" in wanted:
            total = _env_int("BENCH_MEMORY_USERS", 1000)
            memory = {kind: hub_memory(apis[kind], stack.hub_pid(root, kind), total_users=total) for kind in apis}
            results["memory"] = {
                "machine": meta,
                **memory,
                "ratio": ratio(memory["ours"]["rss_mb"], memory["baseline"]["rss_mb"]),
            }
        if "restart" in wanted:
            for api in apis.values():  # both hubs hold 1,000 users, as a real hub's database does
                top_up(api, _env_int("BENCH_MEMORY_USERS", 1000))
            log.info("restart: %d running servers per hub", len(names))
            results["restart"] = {
                "machine": meta,
                "note": RESPONDER_NOTE,
                "set_up": {k: {f: v[f] for f in ("ready", "failures", "wall_seconds")} for k, v in started.items()},
                **restart(
                    root,
                    apis,
                    kube,
                    prefixes=PREFIXES,
                    rounds=_env_int("BENCH_RESTART_ROUNDS", 3),
                    timeout=float(_env_int("BENCH_RESTART_TIMEOUT", 300)),
                ),
            }
    finally:
        for kind in apis:
            cleanup(apis[kind], kube, names)


if __name__ == "__main__":
    sys.exit(main())
