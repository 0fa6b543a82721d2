"""The local platform: real Kubernetes control plane, kwok nodes, node agent, IdP, Rucio, proxy, Prometheus.

Test and dev infrastructure, never shipped. Every component is a module with

    NAME: str
    def up(state: Path, info: dict[str, Any]) -> dict[str, Any]
    def down(state: Path) -> None

``up`` installs what is missing (cached under ``~/.cache/datalake-hub``), starts its
processes through :func:`localplatform.base.spawn`, waits until they answer and returns
its section of ``<state>/platform.json``; ``info`` holds the sections of the components
started before it. ``down`` stops what ``up`` started, by PID.
"""

from .orchestrate import COMPONENTS, load_info, platform_down, platform_up

__all__ = ["COMPONENTS", "load_info", "platform_down", "platform_up"]
