"""Hub-wide objects that must stay single while traitlets hands them to every spawner.

traitlets deep-copies each config value into every object it configures, so a ``Rotator`` set
on ``c.DatalakeSpawner`` became one rotator per server: a task per server instead of one per hub,
and ``max_concurrent_rotations`` bounding each server alone rather than the hub's load on the IdP.
Every spawner also carried its own copy of the profiles and settings (memory per running server,
and one profile re-read per server). Classes deriving from :class:`HubWide` are shared instead.
"""

from __future__ import annotations

from typing import Any, Self

__all__ = ["HubWide"]


class HubWide:
    """Copying returns the same object: one instance serves the whole hub."""

    def __copy__(self) -> Self:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        return self
