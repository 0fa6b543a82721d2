"""Pure conversion of profiles into KubeSpawner `profile_list` entries, and their resolution.

`to_profile_entry` is what the hub hands KubeSpawner; `resolve_overrides` applies an entry and a
user's choices the way KubeSpawner 7 does (`_load_profile`: profile override first, then each
option's choice, dicts merged) so `preview` shows exactly what a spawn would set — and, unlike
KubeSpawner, it rejects a choice key that is not offered instead of failing with a KeyError.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..rucio.selection import instances_for
from .model import Profile, memory_bytes

if TYPE_CHECKING:
    from ..settings.model import Settings
    from ..settings.spawner import ImageSettings
    from .loader import LoadedProfile

__all__ = [
    "ANNOTATION_PREFIX",
    "ChoiceError",
    "describe_profile",
    "image_ref",
    "profile_list_for",
    "resolve_overrides",
    "to_profile_entry",
    "user_may_use",
]

ANNOTATION_PREFIX = "datalake-hub.io/"
PROFILE_KEY = ANNOTATION_PREFIX + "profile"
RUNTIME_KEY = ANNOTATION_PREFIX + "max-runtime-hours"


class ChoiceError(ValueError):
    """A requested profile or choice is not offered to this user."""


def image_ref(image: str, images: ImageSettings) -> str:
    """Resolve a bare image name (`datalake-hep`, `datalake-hep:v2`) against our registry and tag."""
    if "/" in image:
        return image
    name, _, tag = image.partition(":")
    return f"{images.registry}/{name}:{tag or images.tag}"


def user_may_use(profile: Profile, groups: Iterable[str]) -> bool:
    """Profiles without groups are for everyone; others need one shared group."""
    return not profile.groups or bool(set(profile.groups) & set(groups))


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _gpu_override(n: int, profile: Profile, settings: Settings) -> dict[str, Any]:
    gpu = settings.spawner.gpu
    tolerations = [t.model_dump(exclude_none=True) for t in (*profile.tolerations, *gpu.tolerations)]
    return {
        "extra_resource_limits": {gpu.resource_name: str(n)},
        "extra_resource_guarantees": {gpu.resource_name: str(n)},
        "node_selector": dict(gpu.node_selector),
        "tolerations": tolerations,
    }


def describe_profile(profile: Profile, settings: Settings) -> str:
    """One line saying what a server of this profile gets, shown on the spawn page."""
    parts: list[str] = []
    ch, res = profile.choices, profile.resources
    if ch.cores:
        lo, hi = min(ch.cores.options), max(ch.cores.options)
        parts.append(f"{_num(lo)}–{_num(hi)} cores" if lo != hi else f"{_num(lo)} cores")
    elif res.cpu_limit:
        parts.append(f"{_num(res.cpu_limit)} cores")
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
    if profile.mounts:
        parts.append("mounts " + ", ".join(profile.mounts))
    if rucio := instances_for(settings.rucio, profile):
        parts.append("Rucio: " + ", ".join(i.display_name for i in rucio))
    summary = " · ".join(parts)
    return f"{profile.description} ({summary})" if summary else profile.description


def to_profile_entry(profile: Profile, settings: Settings) -> dict[str, Any]:
    """The KubeSpawner `profile_list` entry for ``profile`` (plain data, JSON-serialisable)."""
    image = image_ref(profile.image, settings.images)
    override: dict[str, Any] = {
        "image": image,
        "image_pull_policy": settings.images.pull_policy,
        "extra_labels": {PROFILE_KEY: profile.slug},
        "extra_annotations": {PROFILE_KEY: profile.slug},
    }
    res = profile.resources
    for key in ("cpu_guarantee", "cpu_limit", "mem_guarantee", "mem_limit"):
        value = getattr(res, key)
        if value is not None:
            override[key] = value
    if profile.node_selector:
        override["node_selector"] = dict(profile.node_selector)
    if profile.tolerations:
        override["tolerations"] = [t.model_dump(exclude_none=True) for t in profile.tolerations]
    if res.gpus:
        override.update(_gpu_override(res.gpus, profile, settings))
        override["node_selector"] = {**override["node_selector"], **profile.node_selector}
    if profile.env:
        override["environment"] = dict(profile.env)
    if profile.default_url:
        override["default_url"] = profile.default_url

    options: dict[str, Any] = {}
    ch = profile.choices
    if ch.cores:
        default = ch.cores.default if ch.cores.default is not None else ch.cores.options[0]
        options["cores"] = {
            "display_name": "CPU cores",
            "choices": {
                _num(c): {
                    "display_name": f"{_num(c)} core{'s' if c != 1 else ''}",
                    "default": c == default,
                    "kubespawner_override": {
                        "cpu_guarantee": c * ch.cores.guarantee_fraction,
                        "cpu_limit": c,
                    },
                }
                for c in ch.cores.options
            },
        }
    if ch.memory:
        default_m = ch.memory.default or ch.memory.options[0]
        frac = ch.memory.guarantee_fraction
        options["memory"] = {
            "display_name": "Memory",
            "choices": {
                m: {
                    "display_name": f"{m[:-1]} {m[-1]}B",
                    "default": m == default_m,
                    "kubespawner_override": {
                        "mem_guarantee": m if frac == 1 else int(memory_bytes(m) * frac),
                        "mem_limit": m,
                    },
                }
                for m in ch.memory.options
            },
        }
    if ch.gpus:
        default_g = ch.gpus.default if ch.gpus.default is not None else ch.gpus.options[0]
        options["gpus"] = {
            "display_name": "GPUs",
            "choices": {
                str(n): {
                    "display_name": "No GPU" if n == 0 else f"{n} GPU{'s' if n > 1 else ''}",
                    "default": n == default_g,
                    "kubespawner_override": _gpu_override(n, profile, settings) if n else {},
                }
                for n in ch.gpus.options
            },
        }
    if ch.runtime_hours:
        default_h = ch.runtime_hours.default if ch.runtime_hours.default is not None else ch.runtime_hours.options[0]
        options["runtime"] = {
            "display_name": "Maximum runtime (the server is stopped after it)",
            "choices": {
                str(h): {
                    "display_name": f"{h} hour{'s' if h != 1 else ''}",
                    "default": h == default_h,
                    "kubespawner_override": {"extra_annotations": {RUNTIME_KEY: str(h)}},
                }
                for h in ch.runtime_hours.options
            },
        }
    if ch.image_tag:
        base = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
        tags = ch.image_tag.options
        default_t = ch.image_tag.default or (tags[0] if tags else None)
        option: dict[str, Any] = {
            "display_name": "Image tag",
            "choices": {
                t: {
                    "display_name": t,
                    "default": t == default_t,
                    "kubespawner_override": {"image": f"{base}:{t}"},
                }
                for t in tags
            },
        }
        if ch.image_tag.free_regex is not None:
            option["unlisted_choice"] = {
                "enabled": True,
                "display_name": "Other tag",
                # KubeSpawner validates with re.match: anchor both ends or a prefix match would pass.
                "validation_regex": f"^(?:{ch.image_tag.free_regex})$",
                "validation_message": f"The tag must match {ch.image_tag.free_regex}",
                "kubespawner_override": {"image": f"{base}:{{value}}"},
            }
        options["image"] = option

    entry: dict[str, Any] = {
        "slug": profile.slug,
        "display_name": profile.display_name,
        "description": describe_profile(profile, settings),
        "default": profile.default,
        "kubespawner_override": override,
    }
    if options:
        entry["profile_options"] = options
    return entry


def profile_list_for(
    profiles: Iterable[LoadedProfile | Profile], settings: Settings, groups: Iterable[str]
) -> list[dict[str, Any]]:
    """The entries a user with ``groups`` may see and use, with exactly one default."""
    group_set = set(groups)
    chosen = [p.profile if not isinstance(p, Profile) else p for p in profiles]
    visible = [p for p in sorted(chosen, key=lambda p: (p.order, p.slug)) if user_may_use(p, group_set)]
    entries = [to_profile_entry(p, settings) for p in visible]
    if entries and not any(e["default"] for e in entries):
        entries[0]["default"] = True
    return entries


def _merge(target: dict[str, Any], override: Mapping[str, Any]) -> None:
    """KubeSpawner's `_apply_overrides`: dict values merge (None deletes), others replace."""
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _recursive_update(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _recursive_update(target: dict[str, Any], new: Mapping[str, Any]) -> None:
    for key, value in new.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _recursive_update(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def resolve_overrides(entries: list[dict[str, Any]], user_options: Mapping[str, str]) -> dict[str, Any]:
    """What KubeSpawner would set for ``user_options`` (`{"profile": slug, "cores": "4", ...}`).

    Raises :class:`ChoiceError` for a profile or choice this user is not offered.
    """
    slug = user_options.get("profile")
    if slug:
        entry = next((e for e in entries if e["slug"] == slug), None)
        if entry is None:
            raise ChoiceError(f"profile {slug!r} is not offered; options: {', '.join(e['slug'] for e in entries)}")
    else:
        entry = next((e for e in entries if e.get("default")), None)
        if entry is None:
            raise ChoiceError("no profile is offered to this user")
    result: dict[str, Any] = {}
    _merge(result, entry["kubespawner_override"])
    for name, option in entry.get("profile_options", {}).items():
        free = user_options.get(f"{name}--unlisted-choice")
        choice = user_options.get(name)
        if free:
            unlisted = option.get("unlisted_choice", {})
            if not unlisted.get("enabled"):
                raise ChoiceError(f"{name}: free values are not allowed")
            if not re.match(unlisted["validation_regex"], free):
                raise ChoiceError(f"{name}: {free!r} is not allowed ({unlisted.get('validation_message', '')})")
            override = {
                k: v.format(value=free) if isinstance(v, str) else v
                for k, v in unlisted["kubespawner_override"].items()
            }
        elif choice:
            if choice not in option["choices"]:
                raise ChoiceError(f"{name}: {choice!r} is not offered; options: {', '.join(option['choices'])}")
            override = option["choices"][choice]["kubespawner_override"]
        else:
            override = next(c for c in option["choices"].values() if c.get("default"))["kubespawner_override"]
        _merge(result, override)
    return result
