"""Service names for pods without cluster DNS: ``/etc/hosts`` lines from Endpoints (headless-style).

Why: Dask Gateway's workers dial their scheduler as ``tls://dask-<id>.<namespace>:8786`` and its
API posts to ``http://dask-<id>.<namespace>:8788``; a cluster resolves those through cluster DNS
and kube-proxy, neither of which the platform has. Each pod already gets its own ``/etc/hosts``
(bind-mounted by the node agent, in its private mount namespace), so the agent lists every Service
there under the names cluster DNS would answer for (``name`` in the pod's own namespace, and
``name.ns``, ``name.ns.svc``, ``name.ns.svc.cluster.local``), pointing straight at the ready
endpoints' pod IPs, as for a headless Service. There is no ClusterIP and no port mapping: a
Service whose ``port`` differs from its ``targetPort`` is not reachable this way.

This only has content where Endpoints exist: inside a network namespace of our own
(:mod:`localplatform.netns`); on loopback pod IPs the apiserver refuses them and the lists stay empty.
The files are rewritten in place (same inode), so the bind mounts see each update.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["CLUSTER_DOMAIN", "ServiceHost", "hosts_lines", "rewrite_in_place", "service_hosts"]

CLUSTER_DOMAIN = "cluster.local"

ServiceHost = tuple[str, str, str]
"""(pod IP, namespace, Service name) for one ready endpoint address."""


def service_hosts(endpoints_list: dict[str, Any] | None) -> list[ServiceHost]:
    """Ready addresses of every Endpoints object (its name is its Service's), sorted."""
    out: set[ServiceHost] = set()
    for item in (endpoints_list or {}).get("items") or []:
        meta = item.get("metadata") or {}
        for subset in item.get("subsets") or []:
            for address in subset.get("addresses") or []:
                if address.get("ip"):
                    out.add((address["ip"], meta.get("namespace", ""), meta.get("name", "")))
    return sorted(out)


def hosts_lines(entries: list[ServiceHost], namespace: str | None) -> list[str]:
    """``/etc/hosts`` lines; the bare ``name`` only for Services in ``namespace`` (the pod's own)."""
    lines = []
    for ip, ns, name in entries:
        names = [f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.{CLUSTER_DOMAIN}"]
        if ns == namespace:
            names.insert(0, name)
        lines.append(f"{ip}\t{' '.join(names)}")
    return lines


def rewrite_in_place(path: Path, text: str) -> bool:
    """Write ``text`` into ``path`` keeping its inode (a bind mount of it follows); True if it changed."""
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        path.write_text(text)
        os.chmod(path, 0o644)
        return True
    with open(path, "r+", encoding="utf-8") as fh:
        fh.write(text)
        fh.truncate()
    return True
