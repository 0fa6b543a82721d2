"""The shipped alert rules: valid for Prometheus, firing when they should, about metrics we export.

`promtool` is Debian's (installed by `make prepare` into ~/.cache/datalake-hub, or on first use here).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from localplatform.prometheus import RULES_FILE, promtool
from prometheus_client import REGISTRY

from hub_config.metrics import PREFIX

ROOT = Path(__file__).resolve().parents[2]
RULE_TESTS = ROOT / "tests" / "data" / "alerts" / "datalake-hub.rules.test.yaml"
ALERTS = {
    "DatalakeHubTokenRotationFailing",
    "DatalakeHubServersWithoutFreshToken",
    "DatalakeHubTokenExchangeErrors",
    "DatalakeHubProfileEditRefused",
    "DatalakeHubSpawnFailures",
}


def _promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False)


def exported_names() -> set[str]:
    """Every sample name ours expose on /hub/metrics (``_total``, ``_bucket``, ``_count``, ...)."""
    import hub_config.metrics  # noqa: F401 - registers them

    return {s.name for f in REGISTRY.collect() if f.name.startswith(PREFIX) for s in f.samples} | {
        f"{f.name}{suffix}"
        for f in REGISTRY.collect()
        if f.name.startswith(PREFIX)
        for suffix in (
            ("_total",) if f.type == "counter" else ("_bucket", "_count", "_sum") if f.type == "histogram" else ("",)
        )
    }


def test_promtool_accepts_the_rules() -> None:
    done = _promtool("check", "rules", str(RULES_FILE))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in done.stdout


def test_each_alert_fires_when_it_should_and_not_otherwise() -> None:
    """tests/data/alerts: a failing and a healthy case per alert, evaluated by promtool."""
    done = _promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    tested = {
        t["alertname"] for case in yaml.safe_load(RULE_TESTS.read_text())["tests"] for t in case["alert_rule_test"]
    }
    assert tested == ALERTS


def test_a_broken_expectation_fails() -> None:
    """The rule tests can fail: an alert expected where none fires is reported."""
    cases = yaml.safe_load(RULE_TESTS.read_text())
    cases["tests"][0]["alert_rule_test"][0]["exp_alerts"] = [{"exp_labels": {"job": "hub", "severity": "critical"}}]
    broken = RULE_TESTS.with_name("broken.rules.test.yaml")
    try:
        broken.write_text(yaml.safe_dump(cases))
        done = _promtool("test", "rules", broken.name, cwd=broken.parent)
    finally:
        broken.unlink(missing_ok=True)
    assert done.returncode != 0
    assert "DatalakeHubTokenRotationFailing" in done.stdout + done.stderr


@pytest.mark.parametrize("alert", sorted(ALERTS))
def test_rules_name_only_metrics_we_export(alert: str) -> None:
    rules = {r["alert"]: r for g in yaml.safe_load(RULES_FILE.read_text())["groups"] for r in g["rules"]}
    names = set(re.findall(rf"\b{PREFIX}[a-z_]+\b", rules[alert]["expr"]))
    assert names and names <= exported_names()
