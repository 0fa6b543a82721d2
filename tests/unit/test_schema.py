"""The chart's values schema comes from the settings model and refuses what the hub refuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from hub_config.schema import chart_values_schema, render_chart_schema

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "chart" / "values.schema.json"


def test_committed_schema_is_current() -> None:
    """If the settings model changes, `make schema` must be run and the result committed."""
    assert COMMITTED.read_text() == render_chart_schema(), "chart/values.schema.json is stale: run `make schema`"


def _validator() -> jsonschema.protocols.Validator:
    schema = chart_values_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _reference() -> dict[str, Any]:
    """The reference settings over the chart's defaults: what helm validates for a site file."""
    values: dict[str, Any] = yaml.safe_load((ROOT / "chart" / "values.yaml").read_text())
    values["datalake"] = yaml.safe_load((ROOT / "tests/data/settings/reference.yaml").read_text())
    return values


def test_reference_values_are_valid() -> None:
    """A complete site configuration passes the chart schema."""
    errors = list(_validator().iter_errors(_reference()))
    assert errors == []


@pytest.mark.parametrize(
    ("path", "value", "needle"),
    [
        (("datalake", "iam", "scopez"), [], "scopez"),
        (("datalake", "iam", "issuer"), "http://iam/", "issuer"),
        (("datalake", "storage", "home", "type"), "nfs", "type"),
        (("datalake", "rucio", "instances", 0, "name"), "Bad Name", "name"),
        (("datalake", "spawner", "uid"), 0, "uid"),
        (("unknownTop",), {}, "unknownTop"),
    ],
)
def test_bad_values_are_rejected_naming_the_key(path: tuple[Any, ...], value: Any, needle: str) -> None:
    """`helm install` with a typo or a wrong type fails, and the error names the key."""
    data = _reference()
    node: Any = data
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(node, dict) else node[key]
    node[path[-1]] = value
    errors = list(_validator().iter_errors(data))
    assert errors, f"{path} = {value!r} was accepted"
    described = " ".join(f"{list(e.absolute_path)} {e.message}" for e in errors)
    assert needle in described


def test_schema_is_json_serialisable_and_described() -> None:
    """Every settings property in the chart schema carries a description (the values reference)."""
    schema = json.loads(render_chart_schema())
    missing = [
        f"{name}.{prop}"
        for name, definition in schema["$defs"].items()
        for prop, spec in definition.get("properties", {}).items()
        if "description" not in spec
    ]
    assert missing == []
