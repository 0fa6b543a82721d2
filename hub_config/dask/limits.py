"""Per-group Dask Gateway limits: which apply to a user, and whether a request fits. Pure, stdlib only.

The gateway runs this (its image has no pydantic): the hub renders ``datalake.dask_gateway`` into a
JSON table (:func:`limits_table`), the gateway's cluster options read it back per request. One
function decides a user's limits (:func:`limits_for`); the gateway's options, the spawn page and
``preview`` all ask it, none re-derives it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["DEFAULT_LIMITS", "GatewayLimits", "LimitError", "check_request", "limits_for", "memory_bytes"]

DEFAULT_LIMITS: dict[str, Any] = {
    "max_workers": 4,
    "max_cores_per_worker": 2,
    "max_memory_per_worker": "4G",
    "idle_timeout_minutes": 30,
}
"""A limit left out of a table entry (the settings model's field defaults are these). The chart hands
the gateway ``datalake.dask_gateway`` as the operator wrote it, so the gateway fills gaps from here."""

_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_MEMORY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([KMGT])$")


class LimitError(ValueError):
    """A cluster request beyond the user's limits; the message is shown to the user as is."""


def memory_bytes(text: str) -> int:
    """``4G`` -> 4 GiB in bytes (binary units, as the settings document)."""
    match = _MEMORY.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a size such as 4G")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


@dataclass(frozen=True)
class GatewayLimits:
    """The limits in force for one user (the largest of each over their groups)."""

    max_workers: int
    max_cores_per_worker: float
    max_memory_per_worker: int
    """Bytes."""
    idle_timeout_seconds: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (for the spawn page and ``preview``)."""
        return asdict(self)


def _one(given: Mapping[str, Any] | None) -> GatewayLimits:
    raw = {**DEFAULT_LIMITS, **(given or {})}
    return GatewayLimits(
        max_workers=int(raw["max_workers"]),
        max_cores_per_worker=float(raw["max_cores_per_worker"]),
        max_memory_per_worker=memory_bytes(str(raw["max_memory_per_worker"])),
        idle_timeout_seconds=float(raw["idle_timeout_minutes"]) * 60,
    )


def limits_for(table: Mapping[str, Any], groups: Iterable[str]) -> GatewayLimits:
    """The user's limits: ``table["default"]``, raised field by field by each of their groups' entry.

    ``table`` is ``{"default": {...}, "groups": {group: {...}}}`` with the settings' field names
    (``DaskGatewaySettings.default_limits`` / ``group_limits``); a limit left out is
    :data:`DEFAULT_LIMITS`'s. Groups only ever add: being in a
    group with smaller limits never lowers what another group grants.
    """
    found = [_one(table.get("default"))]
    by_group: Mapping[str, Any] = table.get("groups") or {}
    found += [_one(by_group[g]) for g in sorted(set(groups)) if g in by_group]
    return GatewayLimits(
        max_workers=max(f.max_workers for f in found),
        max_cores_per_worker=max(f.max_cores_per_worker for f in found),
        max_memory_per_worker=max(f.max_memory_per_worker for f in found),
        idle_timeout_seconds=max(f.idle_timeout_seconds for f in found),
    )


def check_request(limits: GatewayLimits, *, worker_cores: float, worker_memory: int) -> None:
    """Refuse a worker size beyond ``limits`` with a message naming the limit (the user sees it)."""
    if worker_cores > limits.max_cores_per_worker:
        raise LimitError(
            f"worker_cores={worker_cores:g} is more than your groups allow ({limits.max_cores_per_worker:g} per worker)"
        )
    if worker_memory > limits.max_memory_per_worker:
        raise LimitError(
            f"worker_memory={worker_memory / 2**30:.3g} GiB is more than your groups allow "
            f"({limits.max_memory_per_worker / 2**30:.3g} GiB per worker)"
        )
