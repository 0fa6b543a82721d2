"""Secret/ConfigMap/downward API/projected volumes kept in step (helper of :mod:`localplatform.nodeagent`).

The kubelet re-reads these sources about once a minute and swaps a new generation of the files in
atomically; the product's token rotation relies on that (a rotated Rucio token must reach the
notebook's files). The agent does the same every couple of seconds so tests need not wait. The
file layout itself (``..data`` symlink, fsGroup ownership) is :mod:`localplatform.nodeagent_volumes`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .nodeagent_env import resource_value
from .nodeagent_volumes import Payload, add_keyed, atomic_write, decode_configmap, decode_secret, downward_value
from .nodeagent_volumes import payload_digest as _digest

if TYPE_CHECKING:
    from .nodeagent_kube import ObjectCache

__all__ = ["ATOMIC_KINDS", "AtomicVolume", "sync_atomic"]

log = logging.getLogger("localplatform.nodeagent")

ATOMIC_KINDS = ("secret", "configMap", "downwardAPI", "projected")
"""Volume sources written with the kubelet's atomic-writer layout and re-synced while the pod runs."""


@dataclass
class AtomicVolume:
    """A Secret/ConfigMap/downward API/projected volume, re-synced while the pod runs."""

    name: str
    source: dict[str, Any]
    kind: str
    path: Path
    digest: str = ""
    token_cache: dict[str, tuple[float, bytes]] = field(default_factory=dict)


async def _keyed(
    payload: Payload, kind: str, ns: str, name: str, src: dict[str, Any], mode: int, objects: ObjectCache
) -> None:
    """One Secret or ConfigMap's keys (all, or ``items``) into ``payload``."""
    obj = await objects.get(kind, ns, name)
    decode = decode_secret if kind == "secret" else decode_configmap
    data = None if obj is None else decode(obj)
    add_keyed(payload, data, src.get("items"), mode, bool(src.get("optional")), f"{kind} {name}")


def _downward(pod: dict[str, Any], items: list[dict[str, Any]], mode: int, payload: Payload) -> None:
    container = pod["spec"]["containers"][0]
    for item in items:
        if "fieldRef" in item:
            value = downward_value(pod, item["fieldRef"]["fieldPath"])
        else:
            value = resource_value(container, item.get("resourceFieldRef") or {})
        payload.add(item["path"], value.encode(), int(item.get("mode", mode)))


async def _token(pod: dict[str, Any], av: AtomicVolume, sat: dict[str, Any], objects: ObjectCache) -> bytes:
    """A bound service-account token from the TokenRequest API, renewed at 80% of its life."""
    audience = sat.get("audience") or ""
    ttl = int(sat.get("expirationSeconds") or 3607)
    cached = av.token_cache.get(audience)
    if cached and time.time() < cached[0]:
        return cached[1]
    meta = pod["metadata"]
    sa = pod["spec"].get("serviceAccountName") or "default"
    body: dict[str, Any] = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "expirationSeconds": ttl,
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": meta["name"], "uid": meta["uid"]},
        },
    }
    if audience:
        body["spec"]["audiences"] = [audience]
    token = (await objects.api.token(meta["namespace"], sa, body)).encode()
    av.token_cache[audience] = (time.time() + ttl * 0.8, token)
    return token


async def _projected(pod: dict[str, Any], av: AtomicVolume, mode: int, payload: Payload, objects: ObjectCache) -> None:
    ns = pod["metadata"]["namespace"]
    for proj in av.source.get("sources") or []:
        if "secret" in proj:
            await _keyed(payload, "secret", ns, proj["secret"].get("name", ""), proj["secret"], mode, objects)
        elif "configMap" in proj:
            cm = proj["configMap"]
            await _keyed(payload, "configmap", ns, cm.get("name", ""), cm, mode, objects)
        elif "downwardAPI" in proj:
            _downward(pod, proj["downwardAPI"].get("items") or [], mode, payload)
        elif "serviceAccountToken" in proj:
            sat = proj["serviceAccountToken"]
            payload.add(sat.get("path", "token"), await _token(pod, av, sat, objects), mode)
        else:
            key = f"{ns}/{pod['metadata']['name']}"
            log.warning("pod %s volume %s: unsupported projection %s", key, av.name, sorted(proj))


async def _payload(pod: dict[str, Any], av: AtomicVolume, objects: ObjectCache) -> Payload:
    """The files the volume should hold now."""
    ns = pod["metadata"]["namespace"]
    src = av.source
    payload = Payload()
    mode = int(src.get("defaultMode", 0o644))
    if av.kind == "secret":
        await _keyed(payload, "secret", ns, src.get("secretName", ""), src, mode, objects)
    elif av.kind == "configMap":
        await _keyed(payload, "configmap", ns, src.get("name", ""), src, mode, objects)
    elif av.kind == "downwardAPI":
        _downward(pod, src.get("items") or [], mode, payload)
    else:
        await _projected(pod, av, mode, payload, objects)
    return payload


async def sync_atomic(pod: dict[str, Any], av: AtomicVolume, fs_group: int | None, objects: ObjectCache) -> bool:
    """Write a new generation if the sources changed; True when an earlier one was replaced."""
    payload = await _payload(pod, av, objects)
    digest = _digest(payload)
    if digest == av.digest:
        return False
    atomic_write(av.path, payload, fs_group)
    changed = bool(av.digest)
    av.digest = digest
    return changed
