"""The few API calls the node agent makes, over aiohttp (helper of :mod:`localplatform.nodeagent`).

``kubernetes_asyncio`` would do, but importing it costs ~6 s of CPU (every model class), which
on a loaded 2-core machine meant 15-20 s before the agent was ready. The agent only lists pods and
nodes, reads Secrets, ConfigMaps, claims and volumes, and asks for service-account tokens: raw
JSON over one ``aiohttp`` session (already installed with ``kubernetes_asyncio``) is enough.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import yaml

__all__ = ["ApiError", "KubeREST", "ObjectCache"]


class ApiError(RuntimeError):
    """The API server answered with an error status (other than 404 on a read)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text[:300]}")
        self.status = status


def _material(user_or_cluster: dict[str, Any], key: str, scratch: Path) -> str | None:
    """A kubeconfig file path, or its ``-data`` form written to ``scratch`` (mode 0600)."""
    if user_or_cluster.get(key):
        return str(user_or_cluster[key])
    data = user_or_cluster.get(f"{key}-data")
    if not data:
        return None
    scratch.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(dir=scratch, prefix=key)
    with open(fd, "wb") as fh:
        fh.write(base64.b64decode(data))
    return path


class KubeREST:
    """A minimal async client built from a one-context kubeconfig (cert or token auth)."""

    def __init__(self, kubeconfig: str, scratch: Path, timeout: float = 10.0) -> None:
        cfg = yaml.safe_load(Path(kubeconfig).read_text())
        current = cfg.get("current-context")
        ctx = next((c["context"] for c in cfg["contexts"] if c["name"] == current), cfg["contexts"][0]["context"])
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
        self.server = cluster["server"].rstrip("/")
        self.ssl = ssl.create_default_context(cafile=_material(cluster, "certificate-authority", scratch))
        cert = _material(user, "client-certificate", scratch)
        if cert:
            self.ssl.load_cert_chain(cert, _material(user, "client-key", scratch))
        self.headers = {"Accept": "application/json"}
        if user.get("token"):
            self.headers["Authorization"] = f"Bearer {user['token']}"
        self.timeout = aiohttp.ClientTimeout(total=timeout)  # bounded: a hung API call never stalls the loop
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> KubeREST:
        self._session = aiohttp.ClientSession(headers=self.headers, timeout=self.timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> Any:
        assert self._session is not None, "use KubeREST as an async context manager"
        data = json.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if data else None
        async with self._session.request(
            method, self.server + path, data=data, params=params, headers=headers, ssl=self.ssl
        ) as resp:
            text = await resp.text()
            if method == "GET" and resp.status == 404:
                return None
            if resp.status >= 400:
                raise ApiError(resp.status, text)
            return json.loads(text)

    async def get(self, path: str, **params: str) -> dict[str, Any] | None:
        """GET ``path``; None when it does not exist."""
        result: dict[str, Any] | None = await self._call("GET", path, params=params or None)
        return result

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``path``."""
        result: dict[str, Any] = await self._call("POST", path, body=body)
        return result

    # Named reads, so call sites say what they fetch.

    async def secret(self, ns: str, name: str) -> dict[str, Any] | None:
        """A Secret, or None."""
        return await self.get(f"/api/v1/namespaces/{quote(ns)}/secrets/{quote(name)}")

    async def configmap(self, ns: str, name: str) -> dict[str, Any] | None:
        """A ConfigMap, or None."""
        return await self.get(f"/api/v1/namespaces/{quote(ns)}/configmaps/{quote(name)}")

    async def claim(self, ns: str, name: str) -> dict[str, Any] | None:
        """A PersistentVolumeClaim, or None."""
        return await self.get(f"/api/v1/namespaces/{quote(ns)}/persistentvolumeclaims/{quote(name)}")

    async def volume(self, name: str) -> dict[str, Any] | None:
        """A PersistentVolume, or None."""
        return await self.get(f"/api/v1/persistentvolumes/{quote(name)}")

    async def pods(self, label_selector: str) -> list[dict[str, Any]]:
        """Pods in all namespaces matching ``label_selector``."""
        data = await self.get("/api/v1/pods", labelSelector=label_selector)
        return list((data or {}).get("items", []))

    async def nodes(self) -> list[dict[str, Any]]:
        """All nodes."""
        data = await self.get("/api/v1/nodes")
        return list((data or {}).get("items", []))

    async def token(self, ns: str, sa: str, body: dict[str, Any]) -> str:
        """A bound service-account token (TokenRequest API)."""
        data = await self.post(f"/api/v1/namespaces/{quote(ns)}/serviceaccounts/{quote(sa)}/token", body)
        return str(data["status"]["token"])


class ObjectCache:
    """Secrets and ConfigMaps read at most once per round (one pod start, one volume sync).

    A pod that names the same Secret in a volume and in ``envFrom`` sees one version of it, and a
    sync round over many pods sharing a ConfigMap costs one read.
    """

    def __init__(self, api: KubeREST) -> None:
        self.api = api
        self._seen: dict[tuple[str, str, str], dict[str, Any] | None] = {}

    async def get(self, kind: str, ns: str, name: str) -> dict[str, Any] | None:
        """A ``secret`` or ``configmap`` (None if absent)."""
        key = (kind, ns, name)
        if key not in self._seen:
            self._seen[key] = await (self.api.secret(ns, name) if kind == "secret" else self.api.configmap(ns, name))
        return self._seen[key]
