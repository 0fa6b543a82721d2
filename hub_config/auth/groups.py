"""IAM group claims → the group names access rules use (`escape/gpu`).

IAM exposes membership three ways; settings pick one and this module maps its values to one form:
`groups: [escape/gpu]`, `wlcg.groups: [/escape/gpu]`,
`eduperson_entitlement: [urn:mace:escape:group:escape:gpu]` (prefix `urn:mace:escape:group:`,
separator `:`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..settings.iam import GroupsClaim

__all__ = ["groups_from_claims"]


def groups_from_claims(claims: Mapping[str, Any], spec: GroupsClaim) -> list[str]:
    """Sorted, de-duplicated group names from ``claims`` according to ``spec``; junk is dropped."""
    raw = claims.get(spec.claim)
    if isinstance(raw, str):
        raw = raw.split() if spec.claim in {"wlcg.groups", "scope"} else [raw]
    if not isinstance(raw, list):
        return []
    out: set[str] = set()
    for value in raw:
        if not isinstance(value, str) or not value:
            continue
        if spec.prefix is not None:
            if not value.startswith(spec.prefix):
                continue
            value = value[len(spec.prefix) :]
        if spec.separator is not None:
            value = value.replace(spec.separator, "/")
        if spec.strip_leading_slash:
            value = value.lstrip("/")
        value = value.strip()
        if value and len(value) <= 255 and value.isprintable():
            out.add(value)
    return sorted(out)
