"""What the spawn page shows of a profile: one compact card (pure, no I/O).

A user picks among a handful of options at a glance, like ETHZ's form or jupyterhub-fancy-profiles:
the name and one-line description, then one line of facts (the image, what it mounts, the web apps
it offers beside JupyterLab, its resources, its Rucio instances). The card is data in the profile's `profile_list`
entry (`datalake_card`), so `preview` shows what the page will, and the form template
(hub_config/templates/spawn_form.html) only lays it out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..rucio.selection import instances_for
from .model import WEB_APPS, Profile, memory_bytes

if TYPE_CHECKING:
    from ..settings.model import Settings

__all__ = ["build_card", "describe_profile", "num", "resource_summary"]


def num(value: float) -> str:
    """`4.0` → `4`, `0.5` → `0.5`: how numbers read on the page and in choice keys."""
    return str(int(value)) if float(value).is_integer() else str(value)


def resource_summary(profile: Profile) -> str:
    """Cores, memory, GPUs and runtime a server of this profile can get, e.g. `2–8 cores · 8G–32G memory`."""
    parts: list[str] = []
    ch, res = profile.choices, profile.resources
    if ch.cores:
        lo, hi = min(ch.cores.options), max(ch.cores.options)
        parts.append(f"{num(lo)}–{num(hi)} cores" if lo != hi else f"{num(lo)} cores")
    elif res.cpu_limit:
        parts.append(f"{num(res.cpu_limit)} cores")
    if ch.memory:
        sizes = sorted(ch.memory.options, key=memory_bytes)
        parts.append(f"{sizes[0]}–{sizes[-1]} memory" if len(sizes) > 1 else f"{sizes[0]} memory")
    elif res.mem_limit:
        parts.append(f"{res.mem_limit} memory")
    if ch.gpus and max(ch.gpus.options) > 0:
        parts.append(f"up to {max(ch.gpus.options)} GPUs")
    elif res.gpus:
        parts.append(f"{res.gpus} GPU{'s' if res.gpus > 1 else ''}")
    if ch.runtime_hours:
        parts.append(f"stops after {max(ch.runtime_hours.options)} h at most")
    return " · ".join(parts)


def describe_profile(profile: Profile, settings: Settings) -> str:
    """The description with everything the server gets in one line (the entry's `description`:
    what KubeSpawner's own form and `preview` show)."""
    parts = [resource_summary(profile)] if resource_summary(profile) else []
    if profile.mounts:
        parts.append("mounts " + ", ".join(profile.mounts))
    if rucio := instances_for(settings.rucio, profile):
        parts.append("Rucio: " + ", ".join(i.display_name for i in rucio))
    summary = " · ".join(parts)
    return f"{profile.description} ({summary})" if summary else profile.description


def _mounts(profile: Profile, settings: Settings) -> list[str]:
    """What the server mounts: home first, then the paths of the profile's mounts (where a user finds them)."""
    storage = settings.storage
    home = "home (temporary)" if storage.home.type == "ephemeral" else "home"
    paths = {m.name: m.mount_path for m in storage.named_mounts()}
    return [home, *(paths.get(name, name) for name in profile.mounts)]


def build_card(profile: Profile, settings: Settings, image: str) -> dict[str, Any]:
    """The spawn page's card for ``profile``, whose resolved image is ``image``."""
    return {
        "description": profile.description,
        # The repository's last path segment and the tag: the registry is the same for every card.
        "image": image.rsplit("/", 1)[-1],
        "mounts": _mounts(profile, settings),
        "web_apps": [WEB_APPS[app] for app in profile.web_apps],
        "resources": resource_summary(profile),
        "rucio": [i.display_name for i in instances_for(settings.rucio, profile)],
    }
