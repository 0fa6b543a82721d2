"""`make bench` fails loudly on a failed round and prints only this run's figures."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.report import _panels
from benchmarks.summary import failures, print_older, print_summary, stock_failures


def _storm_round(ready: int, users: int, failed: dict[str, int]) -> dict[str, Any]:
    spawn = {"users": users, "ready": ready, "failures": failed, "rejected_429": 0}
    spawn["accepted_to_ready_s"] = {"median": 1.0, "p95": 2.0}
    return spawn


def test_a_failed_spawn_fails_the_run() -> None:
    """Any spawn not ready, of ours or the baseline's, is named; a clean round is not."""
    clean = {"ours": _storm_round(5, 5, {}), "baseline": _storm_round(5, 5, {})}
    broken = {"ours": _storm_round(5, 5, {}), "baseline": _storm_round(0, 5, {"spawn-failed": 5})}
    assert failures({"storm": {"rounds": {"5": clean}}}) == []
    (problem,) = failures({"storm": {"rounds": {"5": clean, "10": broken}}})
    assert problem == "storm 10, baseline: 0 of 5 servers ready; failures {'spawn-failed': 5}"
    logins = {"clients": 8, "ours": {"logins": 0, "logins_per_s": 0.0, "failures": {"http:500": 3}}}
    assert failures({"logins": logins}) == ["logins, ours: 0 logins, failures {'http:500': 3}"]
    assert failures({"rotation": {"rotation_failures": {"TimeoutError": 1}}})
    restart = {"rounds": [{"kind": "ours", "problems": []}, {"kind": "baseline", "problems": ["3 pod(s) gone"]}]}
    assert failures({"restart": restart}) == ["restart round 2, baseline: 3 pod(s) gone"]


def test_a_few_spawns_the_stock_hub_fails_are_a_finding_and_any_of_ours_a_failure() -> None:
    """The stock hub losing 1 of 300 pods to its own API timeouts is reported, not a broken run;
    ours losing one, or the stock hub losing more than 5 % (a broken set-up), fails the run."""
    stock_lost_one = {"ours": _storm_round(300, 300, {}), "baseline": _storm_round(299, 300, {"spawn-failed": 1})}
    results = {"storm": {"rounds": {"300": stock_lost_one}}}
    assert failures(results) == []
    (note,) = stock_failures(results)
    assert note.startswith("storm 300, baseline: 299 of 300 servers ready") and "stock hub's own" in note

    ours_lost_one = {"ours": _storm_round(299, 300, {"spawn-failed": 1}), "baseline": _storm_round(300, 300, {})}
    assert failures({"storm": {"rounds": {"300": ours_lost_one}}}) == [
        "storm 300, ours: 299 of 300 servers ready; failures {'spawn-failed': 1}"
    ]
    stock_broken = {"ours": _storm_round(300, 300, {}), "baseline": _storm_round(280, 300, {"spawn-failed": 20})}
    assert len(failures({"storm": {"rounds": {"300": stock_broken}}})) == 1
    assert stock_failures({"storm": {"rounds": {"300": stock_broken}}}) == []


def test_summary_shows_this_run_and_dates_the_rest(capsys: pytest.CaptureFixture[str]) -> None:
    """Figures of scenarios not run now are not printed as current: their file and date are."""
    this_run = {"rotation": {"machine": {"date": "2026-12-04T15:00Z"}, "sessions": 1}}
    older = {"storm": {"machine": {"date": "2026-11-22T10:13Z", "commit": "8a43a62"}, "rounds": {}}}
    print_summary({})
    print_older({**older, **this_run}, set(this_run))
    out = capsys.readouterr().out
    assert "no scenario produced figures in this run" in out
    assert "not run now: storm — results/storm.json holds figures from 2026-11-22T10:13Z (commit 8a43a62)" in out
    assert "rotation" not in out.split("not run now", 1)[1]


def test_chart_marks_older_panels() -> None:
    """The PNG's panels from an earlier run carry that run's date."""
    results = {
        "logins": {"machine": {"date": "2026-11-01T00:00Z"}, "clients": 8, "ours": {"logins_per_s": 1.0}},
        "render": {"machine": {"date": "now"}, "ours": {"median": 1.0}, "baseline": {"median": 1.0}},
    }
    results["logins"]["baseline"] = {"logins_per_s": 1.0}
    titles = [p[0] for p in _panels(results, current={"render"})]
    assert titles == ["Spawn form render, 50 profiles (ms)", "Logins per second\n(older run: 2026-11-01T00:00Z)"]


def _spread(median: float) -> dict[str, float]:
    return {"n": 3, "median": median, "p95": median, "min": median, "max": median}


def test_summary_prints_every_scenario_against_its_target(capsys: pytest.CaptureFixture[str]) -> None:
    """A whole run's figures print with the issue's targets (a KeyError here would lose a 30-minute run's summary)."""
    storm = {"ours": _storm_round(300, 300, {}), "baseline": _storm_round(300, 300, {})}
    storm.update(ratio_p95_ready=1.2, ratio_median_ready=1.0)
    restart = {
        "ours": {"running_servers": 200, "health_s": _spread(6.0), "spawners_checked_s": _spread(6.2)},
        "baseline": {"running_servers": 200, "health_s": _spread(6.0), "spawners_checked_s": _spread(6.0)},
        "ratio_health_s": 1.0,
        "ratio_spawners_checked_s": 1.033,
    }
    restart["ours"]["rotated_all_s"] = _spread(40.0)
    hub = {"logins_per_s": 20.0, "hub_cpu_ms_per_login": 30.0}
    logins = {"clients": 8, "ours": hub, "baseline": hub, "baseline-auth-state": {**hub, "logins_per_s": 21.0}}
    logins.update(ratio=1.0, ratio_to_baseline_auth_state=0.952, cpu_ratio_to_baseline_auth_state=1.0)
    memory = {"ours": {"rss_mb": 260.0, "users": 1000, "running_servers": 200}, "ratio": 1.04}
    memory["baseline"] = {"rss_mb": 250.0, "users": 1000, "running_servers": 200}
    print_summary(
        {
            "storm": {"note": "responder", "rounds": {"300": storm}},
            "restart": restart,
            "logins": logins,
            "memory": memory,
        }
    )
    out = capsys.readouterr().out
    assert "p95 ratio 1.2 (target ≤ 1.05: MISSED)" in out
    assert "ratio 1.033 (MET; target ≤ 1.1)" in out
    assert "ratio 0.952 (target ≥ 1.0: MISSED)" in out
    assert "ratio 1.04 (target ≤ 1.05: MET)" in out
    titles = [p[0] for p in _panels({"restart": restart, "memory": memory}, current={"restart"})]
    assert titles == ["Hub RSS (MB)\n(older run: ?)", "Hub restart, 200 running: median (s)"]
