"""The one thin Kubernetes adapter: create-or-patch, read and delete the hub's per-server Secrets.

Everything else in the package builds plain dicts (see :mod:`hub_config.rucio.secret`); only this
module talks to the API server, through ``kubernetes_asyncio`` — the client KubeSpawner already
uses, so the hub passes KubeSpawner's shared ``ApiClient`` and no global kubeconfig is loaded here.
API errors are converted where they enter into :class:`KubeError`, which names the object and the
status but never the Secret's data (the API server's message goes through :func:`redact`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any, NoReturn

import aiohttp
from kubernetes_asyncio.client import ApiClient, CoreV1Api
from kubernetes_asyncio.client.exceptions import ApiException

from .redact import redact

__all__ = ["KubeError", "SecretStore"]

log = logging.getLogger("hub_config.kube")

_MERGE_PATCH = "application/merge-patch+json"


class KubeError(Exception):
    """A Kubernetes API call about one object failed.

    ``status`` is the HTTP status (None when the API server could not be reached), ``reason``
    the API's reason (``Forbidden``, ``Conflict``, ...) and the start of its message.
    """

    def __init__(self, action: str, kind: str, namespace: str, name: str, status: int | None, reason: str) -> None:
        self.action = action
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.status = status
        self.reason = reason
        where = f"{kind} {namespace}/{name}"
        code = f"HTTP {status}" if status is not None else "no response"
        super().__init__(f"cannot {action} {where}: {code}: {reason}")

    def __reduce__(self) -> tuple[type[KubeError], tuple[str, str, str, str, int | None, str]]:
        return (type(self), (self.action, self.kind, self.namespace, self.name, self.status, self.reason))


def _secret_values(data: dict[str, str] | None) -> list[str]:
    """Every form a Secret's value could be echoed in: base64 and, when text, decoded."""
    out: list[str] = []
    for value in (data or {}).values():
        out.append(value)
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):
            out.append(base64.b64decode(value, validate=True).decode())
    return out


def _api_reason(err: ApiException) -> str:
    """``Reason: message`` from the API's Status body (``err``'s own ``str`` would dump headers and body)."""
    reason = str(err.reason or "")
    try:
        body = json.loads(err.body) if err.body else {}
    except (TypeError, ValueError):
        body = {}
    if isinstance(body, dict):
        reason = str(body.get("reason") or reason)
        message = body.get("message")
        if isinstance(message, str) and message:
            return f"{reason}: {message}"
    return reason


class SecretStore:
    """Create-or-patch, read and delete Secrets with the hub's own credentials (its ServiceAccount).

    ``apply`` needs create and patch on Secrets, ``read_data`` get, ``delete`` delete — the
    chart's Role grants exactly those in the hub's namespace.
    """

    def __init__(self, api_client: ApiClient, *, request_timeout: float = 30.0) -> None:
        self._api = CoreV1Api(api_client)
        # The stubs type bodies as models and omit ``_content_type``; at runtime the client
        # serialises plain dicts as they are and honours ``_content_type``.
        self._untyped: Any = self._api
        self._timeout = request_timeout

    def _fail(
        self, action: str, namespace: str, name: str, err: BaseException, data: dict[str, str] | None = None
    ) -> NoReturn:
        secrets = _secret_values(data)
        if isinstance(err, ApiException):
            raise KubeError(action, "Secret", namespace, name, err.status, redact(_api_reason(err), secrets)) from None
        if isinstance(err, TimeoutError):
            reason = f"no answer within {self._timeout:g}s"
        else:
            reason = f"cannot reach the API server ({type(err).__name__}: {redact(err, secrets)})"
        raise KubeError(action, "Secret", namespace, name, None, reason) from None

    async def apply(self, secret: dict[str, Any]) -> None:
        """Create ``secret``; if it exists (409), JSON-merge-patch its data, labels and owners.

        Create first because at spawn the Secret normally does not exist yet; the rotator's
        updates then take the patch path. A merge patch replaces ``data`` keys given and keeps
        others, so a dropped instance's files stay until the server restarts (harmless: nothing
        points at them).
        """
        meta = secret["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        data = secret.get("data")
        try:
            await self._untyped.create_namespaced_secret(namespace, secret, _request_timeout=self._timeout)
            log.info("created Secret %s/%s (%d keys)", namespace, name, len(data or {}))
            return
        except ApiException as err:
            if err.status != 409:
                self._fail("create", namespace, name, err, data)
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            self._fail("create", namespace, name, err, data)

        patch_meta: dict[str, Any] = {"labels": meta.get("labels") or {}}
        if "annotations" in meta:
            patch_meta["annotations"] = meta["annotations"]
        # Owners are replaced, never kept: a Secret left owned by an earlier server's pod would be
        # garbage-collected when KubeSpawner deletes that pod to start the new one.
        patch_meta["ownerReferences"] = meta.get("ownerReferences") or []
        patch = {"metadata": patch_meta, "data": data or {}}
        try:
            await self._untyped.patch_namespaced_secret(
                name, namespace, patch, _content_type=_MERGE_PATCH, _request_timeout=self._timeout
            )
        except (TimeoutError, ApiException, aiohttp.ClientError, OSError) as err:
            self._fail("patch", namespace, name, err, data)
        log.info("patched Secret %s/%s (%d keys)", namespace, name, len(data or {}))

    async def update(self, secret: dict[str, Any]) -> None:
        """Patch an existing ``secret`` (the rotator's path); create it only if it is gone (404).

        One write per rotation instead of two: :meth:`apply` would first try a create that the
        API server refuses with 409 — still a write request it has to authorise and count.
        """
        meta = secret["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        data = secret.get("data")
        patch = {"metadata": {"labels": meta.get("labels") or {}}, "data": data or {}}
        try:
            await self._untyped.patch_namespaced_secret(
                name, namespace, patch, _content_type=_MERGE_PATCH, _request_timeout=self._timeout
            )
        except ApiException as err:
            if err.status == 404:
                await self.apply(secret)
                return
            self._fail("patch", namespace, name, err, data)
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            self._fail("patch", namespace, name, err, data)
        log.info("patched Secret %s/%s (%d keys)", namespace, name, len(data or {}))

    async def set_owner(self, namespace: str, name: str, owner_reference: Mapping[str, Any]) -> None:
        """Give the Secret this owner, so the garbage collector deletes the Secret with it.

        Done after the pod exists (it needs the pod's uid); only ``ownerReferences`` is patched.
        """
        patch = {"metadata": {"ownerReferences": [dict(owner_reference)]}}
        try:
            await self._untyped.patch_namespaced_secret(
                name, namespace, patch, _content_type=_MERGE_PATCH, _request_timeout=self._timeout
            )
        except ApiException as err:
            if err.status == 404:
                return
            self._fail("patch", namespace, name, err)
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            self._fail("patch", namespace, name, err)

    async def delete(self, namespace: str, name: str) -> None:
        """Delete the Secret; one that is already gone (404) is fine."""
        try:
            await self._api.delete_namespaced_secret(name, namespace, _request_timeout=self._timeout)
        except ApiException as err:
            if err.status == 404:
                log.debug("Secret %s/%s already gone", namespace, name)
                return
            self._fail("delete", namespace, name, err)
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            self._fail("delete", namespace, name, err)
        log.info("deleted Secret %s/%s", namespace, name)

    async def read_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        """The Secret's decoded data, or None if it does not exist (404)."""
        try:
            secret = await self._api.read_namespaced_secret(name, namespace, _request_timeout=self._timeout)
        except ApiException as err:
            if err.status == 404:
                return None
            self._fail("read", namespace, name, err)
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            self._fail("read", namespace, name, err)
        raw: dict[str, str] = secret.data or {}
        return {key: base64.b64decode(value) for key, value in raw.items()}
