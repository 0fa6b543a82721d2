"""JSON schema of the settings, and the chart's `values.schema.json` built from it.

One model, two consumers: the hub validates its settings file with it at start, and Helm
validates `helm install -f site.yaml` with the schema generated here, so both refuse the same
mistakes. `python -m hub_config schema --chart chart/values.schema.json` regenerates the file;
a unit test fails when the committed file is stale.
"""

from __future__ import annotations

import json
from typing import Any

from .settings.model import Settings

__all__ = ["CHART_VALUES_KEYS", "chart_values_schema", "render_chart_schema", "settings_schema"]

CHART_VALUES_KEYS: dict[str, dict[str, Any]] = {
    "jupyterhub": {
        "type": "object",
        "description": "Plain z2jh 4.4.0 values, passed to the z2jh subchart (validated by its own schema).",
    },
    "dask-gateway": {
        "type": "object",
        "description": "Plain values of the official dask-gateway 2026.3.0 chart, an optional dependency "
        "(`enabled`, off by default; validated by its own schema). With `datalake.dask_gateway.enabled`.",
        "properties": {
            "enabled": {"type": "boolean", "description": "Install Dask Gateway with the hub.", "default": False},
        },
    },
    "global": {"type": "object", "description": "Helm global values, shared with subcharts."},
    "profileFiles": {
        "type": "object",
        "description": "Profiles ConfigMap source. `enabled`: ship the chart's `profiles/*.yaml` files; "
        "`inline`: profile files written in values; "
        "`existingConfigMap`: name of a ConfigMap you manage instead (hot-reloaded by the hub).",
        "additionalProperties": False,
        "properties": {
            "enabled": {"type": "boolean", "description": "Ship the chart's profile files.", "default": True},
            "inline": {
                "type": "object",
                "description": "Profile files written in values: file name (`<slug>.yaml`) -> profile. Added to the "
                "chart's files (same name replaces one); ignored with `existingConfigMap`.",
                "propertyNames": {"pattern": "^[a-z0-9][a-z0-9-]*\\.ya?ml$"},
                "additionalProperties": {"$ref": "#/$defs/Profile"},
                "default": {},
            },
            "existingConfigMap": {
                "type": ["string", "null"],
                "description": "Use this ConfigMap of profile files instead of the chart's.",
                "default": None,
            },
        },
    },
    "secrets": {
        "type": "object",
        "description": "Existing Secrets the hub reads (never created from values).",
        "additionalProperties": False,
        # `null` removes a key in Helm; the chart needs both (a null *name* is how one is left out).
        "required": ["iamClientSecret", "authStateKey"],
        "properties": {
            "iamClientSecret": {
                "type": "object",
                "additionalProperties": False,
                "description": "Secret holding the IAM OAuth client secret.",
                "properties": {
                    "name": {"type": ["string", "null"], "description": "Secret name."},
                    "key": {"type": "string", "description": "Key in the Secret.", "default": "client-secret"},
                },
            },
            "authStateKey": {
                "type": "object",
                "additionalProperties": False,
                "description": "Secret holding the auth-state encryption key (JUPYTERHUB_CRYPT_KEY).",
                "properties": {
                    "name": {"type": ["string", "null"], "description": "Secret name."},
                    "key": {"type": "string", "description": "Key in the Secret.", "default": "crypt-key"},
                },
            },
            "daskGatewayApiToken": {
                "type": "object",
                "additionalProperties": False,
                "description": "Secret holding Dask Gateway's hub API token (with `datalake.dask_gateway.enabled`); "
                "mounted into the hub at `datalake.dask_gateway.api_token_file`, read by the gateway. A null `name` "
                "with `dask-gateway.enabled`: the chart generates the Secret (kept across upgrades).",
                "properties": {
                    "name": {"type": ["string", "null"], "description": "Secret name."},
                    "key": {"type": "string", "description": "Key in the Secret.", "default": "api-token"},
                },
            },
        },
    },
    "monitoring": {
        "type": "object",
        "description": "Optional objects for a site's Prometheus Operator and Grafana: the alert rules and the "
        'dashboard for datalake-hub\'s metrics on `/hub/metrics` (docs/operator.md, "Metrics and alerts").',
        "additionalProperties": False,
        "properties": {
            "prometheusRule": {
                "type": "object",
                "additionalProperties": False,
                "description": "A `PrometheusRule` (monitoring.coreos.com/v1) holding the alert rules of "
                "`files/alerts/datalake-hub.rules.yaml`; needs the Prometheus Operator's CRDs.",
                "properties": {
                    "enabled": {"type": "boolean", "description": "Render the PrometheusRule.", "default": False},
                    "labels": {
                        "type": "object",
                        "description": "Extra labels, e.g. the one your Prometheus's `ruleSelector` matches.",
                        "additionalProperties": {"type": "string"},
                        "default": {},
                    },
                },
            },
            "grafanaDashboard": {
                "type": "object",
                "additionalProperties": False,
                "description": "A ConfigMap holding the Grafana dashboard, for Grafana's dashboard sidecar.",
                "properties": {
                    "enabled": {"type": "boolean", "description": "Render the ConfigMap.", "default": False},
                    "labels": {
                        "type": "object",
                        "description": 'Labels the sidecar selects on (its default: `grafana_dashboard: "1"`).',
                        "additionalProperties": {"type": "string"},
                        "default": {"grafana_dashboard": "1"},
                    },
                    "annotations": {
                        "type": "object",
                        "description": "Annotations, e.g. the sidecar's folder annotation.",
                        "additionalProperties": {"type": "string"},
                        "default": {},
                    },
                },
            },
        },
    },
}
"""Top-level chart values besides `datalake`; the chart owns these, the hub never reads them."""


def settings_schema() -> dict[str, Any]:
    """The JSON schema of the `datalake:` block (pydantic, draft 2020-12), every property described."""
    schema = Settings.model_json_schema(mode="validation")
    defs = schema.get("$defs", {})
    for definition in [schema, *defs.values()]:
        for spec in definition.get("properties", {}).values():
            ref = spec.get("$ref", "")
            if ref and "description" not in spec:
                # pydantic drops a required field's description next to a bare $ref; use the model's.
                spec["description"] = defs[ref.rsplit("/", 1)[-1]].get("description", "")
    return schema


def chart_values_schema() -> dict[str, Any]:
    """The chart's whole values schema: `datalake` from the model, other keys from the chart."""
    inner = settings_schema()
    defs = inner.pop("$defs", {})
    defs["Settings"] = inner
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "datalake-hub chart values",
        "description": "Generated by `python -m hub_config schema --chart` from hub_config's settings model. "
        "Do not edit by hand.",
        "type": "object",
        "additionalProperties": False,
        # Helm deletes a key set to null: refuse that here, naming the key, rather than fail in a template.
        "required": ["datalake", "jupyterhub", "monitoring", "profileFiles", "secrets"],
        "properties": {
            "datalake": {"$ref": "#/$defs/Settings", "description": "datalake-hub settings."},
            **CHART_VALUES_KEYS,
        },
        "$defs": dict(sorted(defs.items())),
    }


def render_chart_schema() -> str:
    """The chart schema as the committed file's text (stable key order, trailing newline)."""
    return json.dumps(chart_values_schema(), indent=2, ensure_ascii=False) + "\n"
