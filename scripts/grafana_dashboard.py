"""The Grafana dashboard for datalake-hub's metrics, generated with grafana-foundation-sdk.

Written to chart/files/dashboards/datalake-hub.json, which the chart ships as an optional ConfigMap
for Grafana's dashboard sidecar (`monitoring.grafanaDashboard.enabled`). The JSON is committed;
`python scripts/grafana_dashboard.py` (`make dashboard`) rewrites it, `--check` exits 1 when it is stale (the unit tests
regenerate it and compare, and check that every query parses and names only metrics we export).

Every query filters on the `job` variable and uses `$__rate_interval`, so the dashboard works for
any scrape interval and for several hubs in one Prometheus.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders.dashboard import Dashboard, DatasourceVariable, QueryVariable, Row
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.stat import Panel as Stat
from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

__all__ = ["OUTPUT", "build", "panel_queries", "render"]

OUTPUT = Path(__file__).resolve().parents[1] / "chart" / "files" / "dashboards" / "datalake-hub.json"
UID = "datalake-hub"
J = '{job=~"$job"}'
"""The selector every query carries."""
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")


def _q(expr: str, legend: str) -> Dataquery:
    return Dataquery().expr(expr).legend_format(legend).datasource(DATASOURCE)


def _sel(name: str, extra: str = "") -> str:
    return f'{name}{{job=~"$job"{"," + extra if extra else ""}}}'


def _series(title: str, unit: str, description: str, *queries: Dataquery, width: int = 12) -> Timeseries:
    panel = Timeseries().title(title).unit(unit).description(description).datasource(DATASOURCE).height(8).span(width)
    for query in queries:
        panel = panel.with_target(query)
    return panel


def _stat(title: str, unit: str, description: str, query: Dataquery) -> Stat:
    return (
        Stat()
        .title(title)
        .unit(unit)
        .description(description)
        .datasource(DATASOURCE)
        .height(4)
        .span(6)
        .with_target(query)
    )


def _now() -> list[Any]:
    """The "Now" row's panels."""
    return [
        _stat(
            "Servers without a fresh token",
            "none",
            "Running servers whose Rucio token expired while rotation retries, or whose rotation stopped "
            "until the user signs in again (alert: DatalakeHubServersWithoutFreshToken).",
            _q(f"sum({_sel('datalake_hub_servers_without_fresh_token')})", "servers"),
        ),
        _stat(
            "Running servers",
            "none",
            "Servers running now, all profiles.",
            _q(f"sum({_sel('datalake_hub_running_servers')})", "servers"),
        ),
        _stat(
            "Profile generation",
            "none",
            "Generation of the profile set in force: +1 per accepted edit.",
            _q(f"max({_sel('datalake_hub_profile_generation')})", "generation"),
        ),
        _stat(
            "Profile edit refused",
            "none",
            "1 while the last profile edit was refused and not yet superseded by a good one "
            "(alert: DatalakeHubProfileEditRefused; problems on /hub/datalake/profiles).",
            _q(
                f"max({_sel('datalake_hub_profile_last_refused_timestamp_seconds')} "
                f"> bool {_sel('datalake_hub_profile_loaded_timestamp_seconds')})",
                "refused",
            ),
        ),
    ]


def _tokens() -> list[Any]:
    """The "Tokens" row's panels."""
    rate = "[$__rate_interval]"
    return [
        _series(
            "Token requests to the IdP",
            "reqps",
            "Exchanges (Rucio audience) and refreshes (login tokens) per second, by outcome.",
            _q(
                f"sum by (grant, outcome) (rate({_sel('datalake_hub_token_request_duration_seconds_count')}{rate}))",
                "{{grant}} {{outcome}}",
            ),
        ),
        _series(
            "Token request latency (p95)",
            "s",
            "95th percentile of token request duration at the IdP, by grant.",
            _q(
                "histogram_quantile(0.95, sum by (grant, le) "
                f"(rate({_sel('datalake_hub_token_request_duration_seconds_bucket')}{rate})))",
                "{{grant}}",
            ),
        ),
        _series(
            "Token exchange error ratio",
            "percentunit",
            "Share of token exchanges that failed (alert: DatalakeHubTokenExchangeErrors above 10 %).",
            _q(
                "sum(rate("
                + _sel("datalake_hub_token_request_duration_seconds_count", 'grant="token_exchange",outcome!="success"')
                + f"{rate})) / sum(rate("
                + _sel("datalake_hub_token_request_duration_seconds_count", 'grant="token_exchange"')
                + f"{rate}))",
                "failed",
            ),
        ),
        _series(
            "Rucio tokens at Start, by source",
            "short",
            "Tokens a Start took from the exchange done when the spawn page was shown (preexchanged) "
            "or had to exchange on the click (at_start).",
            _q(
                f"sum by (source) (increase({_sel('datalake_hub_spawn_token_exchanges_total')}{rate}))",
                "{{source}}",
            ),
        ),
    ]


def _rotation() -> list[Any]:
    """The "Rotation" row's panels."""
    rate = "[$__rate_interval]"
    return [
        _series(
            "Rotations by outcome",
            "none",
            "Rotations of running servers' Rucio tokens (alert: DatalakeHubTokenRotationFailing).",
            _q(
                f"sum by (outcome) (increase({_sel('datalake_hub_token_rotations_total')}{rate}))",
                "{{outcome}}",
            ),
        ),
        _series(
            "Time left at rotation",
            "s",
            "Seconds the replaced token still had when a rotation succeeded: near 0 means rotations "
            "are late (raise rucio.refresh_margin_seconds or max_concurrent_rotations).",
            _q(
                "histogram_quantile(0.05, sum by (le) "
                f"(rate({_sel('datalake_hub_token_rotation_remaining_seconds_bucket')}{rate})))",
                "5th percentile",
            ),
            _q(
                "histogram_quantile(0.5, sum by (le) "
                f"(rate({_sel('datalake_hub_token_rotation_remaining_seconds_bucket')}{rate})))",
                "median",
            ),
        ),
        _series(
            "Servers without a fresh token",
            "none",
            "By reason: expired (rotation retrying) or stopped (until the user signs in again).",
            _q(f"sum by (reason) ({_sel('datalake_hub_servers_without_fresh_token')})", "{{reason}}"),
        ),
        _series(
            "Rucio Secret writes",
            "none",
            "Writes of per-server Secrets to the Kubernetes API, by operation and outcome.",
            _q(
                f"sum by (operation, outcome) (increase({_sel('datalake_hub_secret_writes_total')}{rate}))",
                "{{operation}} {{outcome}}",
            ),
        ),
    ]


def _profiles_and_spawns() -> list[Any]:
    """The "Profiles and spawns" row's panels."""
    rate = "[$__rate_interval]"
    return [
        _series(
            "Running servers by profile",
            "none",
            "Servers running now, per profile slug.",
            _q(f"sum by (profile) ({_sel('datalake_hub_running_servers')})", "{{profile}}"),
        ),
        _series(
            "Spawn failures by phase",
            "none",
            "options: choice refused (user error); rucio: started without Rucio credentials; pod: no "
            "running pod (alert: DatalakeHubSpawnFailures, except options).",
            _q(f"sum by (phase) (increase({_sel('datalake_hub_spawn_failures_total')}{rate}))", "{{phase}}"),
        ),
        _series(
            "Profile reloads",
            "none",
            "Loads of the profile files, by outcome (refused: an edit with problems; the last good set serves).",
            _q(f"sum by (outcome) (increase({_sel('datalake_hub_profile_reloads_total')}{rate}))", "{{outcome}}"),
        ),
        _series(
            "Dask clusters by profile",
            "none",
            "Dask Gateway clusters pending or running, by the profile of their owner's server "
            "((none): the owner's server has stopped).",
            _q(f"sum by (profile) ({_sel('datalake_hub_dask_clusters')})", "{{profile}}"),
        ),
        _series(
            "Dask workers by profile",
            "none",
            "Workers those clusters are scaled to (what the gateway's controller converges to).",
            _q(f"sum by (profile) ({_sel('datalake_hub_dask_workers')})", "{{profile}}"),
        ),
    ]


ROWS: list[tuple[str, Callable[[], list[Any]]]] = [
    ("Now", _now),
    ("Tokens", _tokens),
    ("Rotation", _rotation),
    ("Profiles and spawns", _profiles_and_spawns),
]
"""The rows, top to bottom, and the function building each one's panels."""


def build() -> Dashboard:
    """The dashboard: stats on top, then tokens, rotation, profiles and spawns."""
    dashboard = (
        Dashboard("datalake-hub")
        .uid(UID)
        .description("Token exchange and rotation, Rucio Secrets, profiles and spawns of datalake-hub.")
        .tags(["datalake-hub", "jupyterhub"])
        .refresh("1m")
        .time("now-6h", "now")
        .editable()
        .with_variable(DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(
            QueryVariable("job")
            .label("Job")
            .datasource(DATASOURCE)
            .query("label_values(datalake_hub_profile_generation, job)")
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .refresh(2)
        )
    )
    for title, panels in ROWS:
        dashboard = dashboard.with_row(Row(title))
        for panel in panels():
            dashboard = dashboard.with_panel(panel)
    return dashboard


def render() -> str:
    """The dashboard JSON, as committed."""
    return JSONEncoder(sort_keys=True, indent=2).encode(build().build()) + "\n"


def panel_queries(dashboard: dict[str, Any]) -> dict[str, list[str]]:
    """Each panel's title and its PromQL expressions (rows have none)."""
    return {
        p["title"]: [t["expr"] for t in p.get("targets", [])] for p in dashboard["panels"] if p.get("type") != "row"
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed JSON is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is stale: run `make dashboard`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text)
    json.loads(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
