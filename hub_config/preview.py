"""What a user's pod would look like, without a cluster: the admin's `preview --pod`.

Built from what the hub itself submits: the profile's KubeSpawner overrides and
:func:`hub_config.pod.build_pod_wiring` (storage, the Rucio mount and env, security contexts),
shaped like the pod KubeSpawner creates; a unit test compares it with the manifest real
KubeSpawner 7 generates for the same user and choices.
"""

from __future__ import annotations

from typing import Any

from kubespawner.slugs import escape_slug

from .errors import AccountError
from .pod import build_pod_wiring
from .profiles.kubespawner import resolve_overrides
from .profiles.loader import LoadedProfile
from .profiles.model import Profile, memory_bytes
from .rucio.account import LOOKUP_AT_SPAWN, account_for, choose_account
from .rucio.selection import extension_modes
from .settings.model import Settings
from .settings.rse import replica_paths_by_instance

__all__ = ["RUCIO_SECRET_SHOWN", "pod_fragment", "rucio_accounts", "rucio_panel"]

RUCIO_SECRET_SHOWN = "<pod-name>-rucio"  # noqa: S105 - a name, not a secret
"""The Rucio Secret's name as shown: the real one derives from the pod name, which KubeSpawner picks."""


def _expand(value: Any, fields: dict[str, str]) -> Any:
    if isinstance(value, str):
        for key, replacement in fields.items():
            value = value.replace("{" + key + "}", replacement)
        return value
    if isinstance(value, list):
        return [_expand(v, fields) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, fields) for k, v in value.items()}
    return value


def _bytes(value: Any) -> int:
    """Memory as KubeSpawner submits it: bytes (the API server shows them as a quantity)."""
    return memory_bytes(value) if isinstance(value, str) else int(value)


def pod_fragment(
    settings: Settings,
    profiles: list[LoadedProfile],
    entries: list[dict[str, Any]],
    options: dict[str, str],
    *,
    username: str,
) -> dict[str, Any]:
    """The pod spec parts datalake-hub decides for ``username`` choosing ``options``."""
    overrides = resolve_overrides(entries, options)
    slug = options.get("profile") or next(e["slug"] for e in entries if e["default"])
    profile = next(lp.profile for lp in profiles if lp.profile.slug == slug)
    image = overrides["image"]
    wiring = build_pod_wiring(settings, profile, image=image, rucio_secret=RUCIO_SECRET_SHOWN)
    env = {**overrides.get("environment", {}), **wiring.environment}
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    if "cpu_guarantee" in overrides:
        requests["cpu"] = float(overrides["cpu_guarantee"])
    if "cpu_limit" in overrides:
        limits["cpu"] = float(overrides["cpu_limit"])
    if "mem_guarantee" in overrides:
        requests["memory"] = _bytes(overrides["mem_guarantee"])
    if "mem_limit" in overrides:
        limits["memory"] = _bytes(overrides["mem_limit"])
    requests.update(overrides.get("extra_resource_guarantees", {}))
    limits.update(overrides.get("extra_resource_limits", {}))
    sp = settings.spawner
    fields = {"escaped_username": escape_slug(username), "username": username}
    node_selector = {**sp.node_selector, **overrides.get("node_selector", {})}
    fragment: dict[str, Any] = {
        "metadata": {
            "labels": dict(overrides.get("extra_labels", {})),
            "annotations": dict(overrides.get("extra_annotations", {})),
        },
        "spec": {
            "securityContext": wiring.pod_security_context,
            "nodeSelector": node_selector,
            "tolerations": overrides.get("tolerations", []),
            "initContainers": _expand(wiring.init_containers, fields),
            "volumes": _expand(wiring.volumes, fields),
            "containers": [
                {
                    "name": "notebook",
                    "image": image,
                    "resources": {"requests": requests, "limits": limits},
                    "securityContext": wiring.container_security_context,
                    "volumeMounts": _expand(wiring.volume_mounts, fields),
                    "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
                }
            ],
        },
    }
    return fragment


def rucio_accounts(settings: Settings, *, username: str, claims: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per instance, the Rucio account ``username`` with ``claims`` gets, and from which route.

    The same :func:`~hub_config.rucio.account.choose_account` the hub runs at spawn; an account
    only the lookup route can give is shown as ``asked from Rucio at spawn`` (the hub asks Rucio
    with the user's token, which a preview does not have).
    """
    out: dict[str, dict[str, Any]] = {}
    for inst in settings.rucio.instances:
        choice = choose_account(inst, username=username, claims=claims)
        if choice.account is not None:
            out[inst.name] = {"account": choice.account, "route": choice.route}
        elif choice.lookup_pending:
            out[inst.name] = {"account": LOOKUP_AT_SPAWN, "route": "lookup"}
        else:
            try:
                account_for(inst, username=username, claims=claims)
            except AccountError as err:  # always: no route gave one; the message names each
                out[inst.name] = {"account": None, "problem": str(err)}
            continue
        if choice.tried:
            out[inst.name]["skipped"] = list(choice.tried)
    return out


def rucio_panel(settings: Settings, profile: Profile) -> dict[str, dict[str, Any]]:
    """Per instance, the Rucio panel's mode and paths a server of ``profile`` gets.

    The same :func:`~hub_config.rucio.selection.extension_modes` and
    :func:`~hub_config.settings.rse.replica_paths_by_instance` the hub renders the extension's
    config from, so an admin sees which profiles read the EOS RSE in place and where.
    """
    replica = replica_paths_by_instance(settings.rucio, settings.storage)
    out: dict[str, dict[str, Any]] = {}
    for name, mode in extension_modes(settings.rucio, profile).items():
        paths = replica.get(name)
        if mode == "replica" and paths is not None:
            out[name] = {
                "mode": "replica",
                "destination_rse": paths.destination_rse,
                "rse_mount_path": paths.rse_mount_path,
                "path_begins_at": paths.path_begins_at,
            }
        else:
            out[name] = {"mode": "download"}
            if paths is not None:
                out[name]["why"] = f"mount {paths.rse_mount!r} (RSE {paths.destination_rse}) is not in this profile"
    return out
