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
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiClient, CoreV1Api, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from .errors import KubeError
from .redact import redact

__all__ = ["KubeError", "SecretStore", "delete_dask_clusters", "list_dask_clusters", "list_pods"]

log = logging.getLogger("hub_config.kube")

_MERGE_PATCH = "application/merge-patch+json"
_EXPECTED_OUTCOMES = {404: "not_found", 409: "conflict"}
"""The Secret-writes metric's outcome for an expected refusal: a create that finds the Secret,
a patch or delete that does not."""


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

    async def _call(
        self,
        action: str,
        namespace: str,
        name: str,
        request: Callable[[], Awaitable[Any]],
        *,
        data: dict[str, str] | None = None,
        expected: Collection[int] = (),
    ) -> tuple[Any, int | None]:
        """Run one API call on Secret ``namespace/name``: ``(result, None)``, or ``(None, status)`` for
        a status in ``expected`` (404 on delete, 409 on create, ...). Anything else becomes a
        :class:`KubeError` naming the object and the cause, its text redacted of ``data`` in every
        encoding, so no caller repeats the conversion (or forgets the redaction)."""
        outcome = "error"
        try:
            result = await request()
            outcome = "success"
            return result, None
        except ApiException as err:
            if err.status in expected:
                outcome = _EXPECTED_OUTCOMES.get(err.status, "error")
                return None, err.status
            reason = redact(_api_reason(err), _secret_values(data))
            raise KubeError(action, "Secret", namespace, name, err.status, reason) from None
        except TimeoutError:
            raise KubeError(action, "Secret", namespace, name, None, f"no answer within {self._timeout:g}s") from None
        except (aiohttp.ClientError, OSError) as err:
            reason = f"cannot reach the API server ({type(err).__name__}: {redact(err, _secret_values(data))})"
            raise KubeError(action, "Secret", namespace, name, None, reason) from None
        finally:
            _count_secret_write(action, outcome)

    def _patch(self, namespace: str, name: str, patch: dict[str, Any]) -> Callable[[], Awaitable[Any]]:
        return lambda: self._untyped.patch_namespaced_secret(
            name, namespace, patch, _content_type=_MERGE_PATCH, _request_timeout=self._timeout
        )

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
        create = self._untyped.create_namespaced_secret
        _, refused = await self._call(
            "create",
            namespace,
            name,
            lambda: create(namespace, secret, _request_timeout=self._timeout),
            data=data,
            expected=(409,),
        )
        if refused is None:
            log.info("created Secret %s/%s (%d keys)", namespace, name, len(data or {}))
            return

        patch_meta: dict[str, Any] = {"labels": meta.get("labels") or {}}
        if "annotations" in meta:
            patch_meta["annotations"] = meta["annotations"]
        # Owners are replaced, never kept: a Secret left owned by an earlier server's pod would be
        # garbage-collected when KubeSpawner deletes that pod to start the new one.
        patch_meta["ownerReferences"] = meta.get("ownerReferences") or []
        patch = {"metadata": patch_meta, "data": data or {}}
        await self._call("patch", namespace, name, self._patch(namespace, name, patch), data=data)
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
        _, gone = await self._call(
            "patch", namespace, name, self._patch(namespace, name, patch), data=data, expected=(404,)
        )
        if gone:
            await self.apply(secret)
            return
        log.info("patched Secret %s/%s (%d keys)", namespace, name, len(data or {}))

    async def set_owner(self, namespace: str, name: str, owner_reference: Mapping[str, Any]) -> None:
        """Give the Secret this owner, so the garbage collector deletes the Secret with it.

        Done after the pod exists (it needs the pod's uid); only ``ownerReferences`` is patched.
        """
        patch = {"metadata": {"ownerReferences": [dict(owner_reference)]}}
        await self._call("patch", namespace, name, self._patch(namespace, name, patch), expected=(404,))

    async def delete(self, namespace: str, name: str) -> None:
        """Delete the Secret; one that is already gone (404) is fine."""
        delete = self._api.delete_namespaced_secret
        _, gone = await self._call(
            "delete", namespace, name, lambda: delete(name, namespace, _request_timeout=self._timeout), expected=(404,)
        )
        if gone:
            log.debug("Secret %s/%s already gone", namespace, name)
            return
        log.info("deleted Secret %s/%s", namespace, name)

    async def read_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        """The Secret's decoded data, or None if it does not exist (404)."""
        read = self._api.read_namespaced_secret
        secret, gone = await self._call(
            "read", namespace, name, lambda: read(name, namespace, _request_timeout=self._timeout), expected=(404,)
        )
        if gone:
            return None
        raw: dict[str, str] = secret.data or {}
        return {key: base64.b64decode(value) for key, value in raw.items()}


async def list_pods(namespace: str, label_selector: str, *, request_timeout: float = 10.0) -> list[dict[str, Any]]:
    """Pods in ``namespace`` matching ``label_selector``, as the API returns them (plain dicts).

    For the gateway's read of notebook pods (:mod:`hub_config.dask.gateway`), with the credentials
    its process loaded (the chart's gateway ServiceAccount); errors become a :class:`KubeError`.
    """
    async with ApiClient() as api_client:
        untyped: Any = CoreV1Api(api_client)
        try:
            resp = await untyped.list_namespaced_pod(
                namespace, label_selector=label_selector, _request_timeout=request_timeout, _preload_content=False
            )
            data: dict[str, Any] = json.loads(await resp.read())
        except ApiException as err:
            raise KubeError("list", "Pod", namespace, label_selector, err.status, _api_reason(err)) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            reason = f"cannot reach the API server ({type(err).__name__})"
            raise KubeError("list", "Pod", namespace, label_selector, None, reason) from None
    items: list[dict[str, Any]] = data.get("items") or []
    return items


DASK_GROUP, DASK_VERSION, DASK_PLURAL = "gateway.dask.org", "v1alpha1", "daskclusters"


async def list_dask_clusters(
    api_client: ApiClient, namespace: str, *, timeout: float = 10.0, what: str = DASK_PLURAL
) -> list[dict[str, Any]]:
    """The DaskCluster objects in ``namespace`` (plain dicts); errors become a :class:`KubeError`."""
    untyped: Any = CustomObjectsApi(api_client)
    try:
        listed = await untyped.list_namespaced_custom_object(
            DASK_GROUP, DASK_VERSION, namespace, DASK_PLURAL, _request_timeout=timeout
        )
    except ApiException as err:
        raise KubeError("list", "DaskCluster", namespace, what, err.status, _api_reason(err)) from None
    except (TimeoutError, aiohttp.ClientError, OSError) as err:
        raise KubeError("list", "DaskCluster", namespace, what, None, type(err).__name__) from None
    items: list[dict[str, Any]] = listed.get("items") or []
    return items


async def delete_dask_clusters(
    api_client: ApiClient, namespace: str, username: str, *, timeout: float = 10.0
) -> list[str]:
    """Delete the DaskCluster objects the gateway made for ``username`` in ``namespace``; their names.

    The gateway's controller then stops their scheduler and worker pods. The object records its
    owner in ``spec.username`` (not a label), so the list is filtered here. Needs list and delete on
    daskclusters (the chart's hub Role grants them when the gateway is on).
    """
    untyped: Any = CustomObjectsApi(api_client)
    listed = await list_dask_clusters(api_client, namespace, timeout=timeout, what=f"{DASK_PLURAL} of {username}")
    names = [item["metadata"]["name"] for item in listed if (item.get("spec") or {}).get("username") == username]
    for name in names:
        try:
            await untyped.delete_namespaced_custom_object(
                DASK_GROUP, DASK_VERSION, namespace, DASK_PLURAL, name, _request_timeout=timeout
            )
        except ApiException as err:
            if err.status != 404:
                raise KubeError("delete", "DaskCluster", namespace, name, err.status, _api_reason(err)) from None
    return names


def _count_secret_write(action: str, outcome: str) -> None:
    """Count a Secret write on the hub's ``/hub/metrics``.

    Imported here, not at the top: the Dask Gateway's process imports this module for
    :func:`list_pods` and has no prometheus_client (nor any metric of ours to serve).
    """
    from .metrics import METRICS, SECRET_OPERATIONS

    if action in SECRET_OPERATIONS:
        METRICS.secret_write(action, outcome)
