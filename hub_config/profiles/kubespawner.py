"""Pure conversion of profiles into KubeSpawner `profile_list` entries, and their resolution.

`to_profile_entry` is what the hub hands KubeSpawner; `resolve_overrides` applies an entry and a
user's choices the way KubeSpawner 7 does (`_load_profile`: profile override first, then each
option's choice, dicts merged) so `preview` shows exactly what a spawn would set — and, unlike
KubeSpawner, it rejects a choice key that is not offered instead of failing with a KeyError.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ChoiceError
from .card import build_card, describe_profile
from .card import num as _num
from .model import Profile, memory_bytes

if TYPE_CHECKING:
    from ..settings.model import Settings
    from ..settings.spawner import ImageSettings
    from .loader import LoadedProfile

__all__ = [
    "CHOICE_KINDS",
    "RENAMED_OPTION_KEYS",
    "ChoiceError",
    "ChoiceKind",
    "describe_profile",
    "image_ref",
    "normalize_user_options",
    "profile_list_for",
    "resolve_overrides",
    "to_profile_entry",
    "user_may_use",
]

ANNOTATION_PREFIX = "datalake-hub.io/"
PROFILE_KEY = ANNOTATION_PREFIX + "profile"
RUNTIME_KEY = ANNOTATION_PREFIX + "max-runtime-hours"


def image_ref(image: str, images: ImageSettings) -> str:
    """Resolve a bare image name (`datalake-hep`, `datalake-hep:v2`) against our registry and tag."""
    if "/" in image:
        return image
    name, _, tag = image.partition(":")
    return f"{images.registry}/{name}:{tag or images.tag}"


def user_may_use(profile: Profile, groups: Iterable[str]) -> bool:
    """Profiles without groups are for everyone; others need one shared group."""
    return not profile.groups or bool(set(profile.groups) & set(groups))


def _gpu_override(n: int, profile: Profile, settings: Settings) -> dict[str, Any]:
    gpu = settings.spawner.gpu
    tolerations = [t.model_dump(exclude_none=True) for t in (*profile.tolerations, *gpu.tolerations)]
    return {
        "extra_resource_limits": {gpu.resource_name: str(n)},
        "extra_resource_guarantees": {gpu.resource_name: str(n)},
        "node_selector": dict(gpu.node_selector),
        "tolerations": tolerations,
    }


@dataclass(frozen=True)
class _Target:
    """What a choice's override may depend on besides the chosen value."""

    profile: Profile
    settings: Settings
    image_base: str
    """The profile's image without its tag (an image tag choice replaces the tag)."""


def _no_unlisted(choice: Any, target: _Target) -> dict[str, Any] | None:
    return None


@dataclass(frozen=True)
class ChoiceKind:
    """How one `choices.<field>` menu of a profile becomes a KubeSpawner profile option.

    One description per kind, so the five menus cannot drift apart in how they pick their default,
    key their choices or build their overrides: adding a kind is one more entry in `CHOICE_KINDS`.
    """

    field: str
    """The `Choices` attribute, and the option's key in `profile_options` and spawn requests."""
    title: str
    label: Callable[[Any], str]
    """Menu label of one value."""
    override: Callable[[Any, Any, _Target], dict[str, Any]]
    """KubeSpawner override for (choice model, chosen value, target)."""
    key: Callable[[Any], str] = str
    """Choice key of one value (what the form posts)."""
    unlisted: Callable[[Any, _Target], dict[str, Any] | None] = _no_unlisted
    """KubeSpawner's `unlisted_choice` (a typed value), or None when only listed values are allowed."""


def _plural(n: float, word: str) -> str:
    return f"{_num(n)} {word}{'s' if n != 1 else ''}"


def _image_tag_unlisted(choice: Any, target: _Target) -> dict[str, Any] | None:
    if choice.free_regex is None:
        return None
    return {
        "enabled": True,
        "display_name": "Other tag",
        # KubeSpawner validates with re.match: anchor both ends or a prefix match would pass.
        "validation_regex": f"^(?:{choice.free_regex})$",
        "validation_message": f"The tag must match {choice.free_regex}",
        "kubespawner_override": {"image": f"{target.image_base}:{{value}}"},
    }


def _memory_guarantee(choice: Any, m: str) -> str | int:
    frac = choice.guarantee_fraction
    return m if frac == 1 else int(memory_bytes(m) * frac)


CHOICE_KINDS: tuple[ChoiceKind, ...] = (
    ChoiceKind(
        field="cores",
        title="CPU cores",
        key=_num,
        label=lambda c: _plural(c, "core"),
        override=lambda ch, c, _t: {"cpu_guarantee": c * ch.guarantee_fraction, "cpu_limit": c},
    ),
    ChoiceKind(
        field="memory",
        title="Memory",
        label=lambda m: f"{m[:-1]} {m[-1]}B",
        override=lambda ch, m, _t: {"mem_guarantee": _memory_guarantee(ch, m), "mem_limit": m},
    ),
    ChoiceKind(
        field="gpus",
        title="GPUs",
        label=lambda n: "No GPU" if n == 0 else _plural(n, "GPU"),
        override=lambda _ch, n, t: _gpu_override(n, t.profile, t.settings) if n else {},
    ),
    ChoiceKind(
        field="runtime_hours",
        title="Stops after",
        label=lambda h: _plural(h, "hour"),
        override=lambda _ch, h, _t: {"extra_annotations": {RUNTIME_KEY: str(h)}},
    ),
    ChoiceKind(
        field="image_tag",
        title="Image tag",
        label=str,
        override=lambda _ch, tag, t: {"image": f"{t.image_base}:{tag}"},
        unlisted=_image_tag_unlisted,
    ),
)
"""Every kind of spawn-page choice, in the order the form shows them."""


def _profile_option(kind: ChoiceKind, choice: Any, target: _Target) -> dict[str, Any]:
    """The `profile_options` entry of one menu; its default is the model's, else the first value."""
    values: list[Any] = list(choice.options)
    default = choice.default if choice.default is not None else (values[0] if values else None)
    option: dict[str, Any] = {
        "display_name": kind.title,
        "choices": {
            kind.key(v): {
                "display_name": kind.label(v),
                "default": v == default,
                "kubespawner_override": kind.override(choice, v, target),
            }
            for v in values
        },
    }
    unlisted = kind.unlisted(choice, target)
    if unlisted is not None:
        option["unlisted_choice"] = unlisted
    return option


def _image_base(image: str) -> str:
    """``image`` without its tag (a registry port's colon is not a tag)."""
    return image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image


def _profile_override(profile: Profile, settings: Settings, image: str) -> dict[str, Any]:
    """The profile's own KubeSpawner override, before any choice."""
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
    return override


def to_profile_entry(profile: Profile, settings: Settings) -> dict[str, Any]:
    """The KubeSpawner `profile_list` entry for ``profile`` (plain data, JSON-serialisable)."""
    image = image_ref(profile.image, settings.images)
    target = _Target(profile, settings, _image_base(image))
    options: dict[str, Any] = {}
    for kind in CHOICE_KINDS:
        choice = getattr(profile.choices, kind.field)
        if choice is not None:
            options[kind.field] = _profile_option(kind, choice, target)
    entry: dict[str, Any] = {
        "slug": profile.slug,
        "display_name": profile.display_name,
        "description": describe_profile(profile, settings),
        "default": profile.default,
        "kubespawner_override": _profile_override(profile, settings, image),
        "datalake_card": build_card(profile, settings, image),
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


RENAMED_OPTION_KEYS: dict[str, str] = {
    "runtime": "runtime_hours",
    "image": "image_tag",
    "image--unlisted-choice": "image_tag--unlisted-choice",
}
"""Spawn option keys before they were named after the profile fields (old → new).

Accepted in REST spawn requests for one release (deprecated in 2026.12, removed in the next one);
the spawn form posts the new keys already.
"""


def normalize_user_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with the old option keys (`RENAMED_OPTION_KEYS`) renamed; a new key wins over its old one.

    KubeSpawner looks choices up by the option key itself, so the spawner must hand it the
    normalised options, and `resolve_overrides` normalises too so validation and `preview` agree.
    """
    result = {k: v for k, v in options.items() if k not in RENAMED_OPTION_KEYS}
    for old, new in RENAMED_OPTION_KEYS.items():
        if old in options and new not in options:
            result[new] = options[old]
    return result


def resolve_overrides(entries: list[dict[str, Any]], user_options: Mapping[str, Any]) -> dict[str, Any]:
    """What KubeSpawner would set for ``user_options`` (`{"profile": slug, "cores": "4", ...}`).

    Old option keys are accepted (see `normalize_user_options`). Raises :class:`ChoiceError` for a
    profile or choice this user is not offered.
    """
    user_options = normalize_user_options(user_options)
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
