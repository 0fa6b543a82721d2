"""The Secret adapter against a real kube-apiserver, as the hub's ServiceAccount (RBAC enforced).

The local platform's control plane grants the hub exactly what the chart's Role does
(create/get/patch/update/delete on Secrets in its namespace), so a refusal here is the refusal
a cluster would give. The garbage collector runs too: a Secret owned by a pod goes with it.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient, CoreV1Api

from hub_config.errors import KubeError
from hub_config.kube import SecretStore
from tests.support.expected import fake_jwt

pytestmark = [pytest.mark.platform, pytest.mark.timeout(300), pytest.mark.asyncio(loop_scope="session")]
"""One loop for the tests and the ApiClient fixture (async fixtures run on the session loop here)."""


SECRET_VALUE = fake_jwt({"alg": "RS256"}, {"secret": "payload"}, b"secret-sig")


@pytest.fixture(scope="module")
def controlplane(platform_factory: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    section: dict[str, Any] = platform_factory("controlplane")["controlplane"]
    return section


@pytest.fixture
async def hub_api(controlplane: dict[str, Any]) -> AsyncIterator[ApiClient]:
    """An ApiClient with the hub ServiceAccount's kubeconfig, as KubeSpawner would share it."""
    client = await kube_config.new_client_from_config(config_file=controlplane["hub_kubeconfig"])
    async with client:
        yield client


@pytest.fixture
def namespace(controlplane: dict[str, Any]) -> str:
    ns: str = controlplane["namespace"]
    return ns


def _secret(namespace: str, name: str, data: dict[str, bytes], **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "datalake-hub"},
            **meta,
        },
        "type": "Opaque",
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def _name() -> str:
    return f"jupyter-test-{uuid.uuid4().hex[:8]}-rucio"


async def test_create_then_patch_on_conflict(hub_api: ApiClient, namespace: str) -> None:
    """First apply creates; the second (rotation) patches data and labels in place, keeping other keys."""
    store = SecretStore(hub_api)
    name = _name()
    try:
        await store.apply(_secret(namespace, name, {"token-escape": b"one", "rucio.cfg": b"[client]\n"}))
        assert await store.read_data(namespace, name) == {"token-escape": b"one", "rucio.cfg": b"[client]\n"}
        rotated = _secret(namespace, name, {"token-escape": b"two"})
        rotated["metadata"]["labels"]["rotation"] = "2"
        await store.apply(rotated)
        assert await store.read_data(namespace, name) == {"token-escape": b"two", "rucio.cfg": b"[client]\n"}
        obj = await CoreV1Api(hub_api).read_namespaced_secret(name, namespace)
        assert obj.metadata.labels["rotation"] == "2"
        assert obj.type == "Opaque"
    finally:
        await store.delete(namespace, name)
    assert await store.read_data(namespace, name) is None


async def test_delete_and_read_tolerate_absence(hub_api: ApiClient, namespace: str) -> None:
    """Deleting a Secret that is gone (stop after a failed spawn) is fine; reading one gives None."""
    store = SecretStore(hub_api)
    name = _name()
    await store.delete(namespace, name)
    assert await store.read_data(namespace, name) is None


async def test_rbac_refusal_names_the_object_not_the_data(hub_api: ApiClient) -> None:
    """Outside its namespace the hub is Forbidden: KubeError with kind/namespace/name, no Secret data."""
    store = SecretStore(hub_api)
    name = _name()
    secret = _secret("default", name, {"token-escape": SECRET_VALUE.encode()})
    with pytest.raises(KubeError) as exc:
        await store.apply(secret)
    err = exc.value
    assert (err.kind, err.namespace, err.name, err.status) == ("Secret", "default", name, 403)
    assert f"Secret default/{name}" in str(err)
    assert "Forbidden" in str(err)
    encoded = secret["data"]["token-escape"]
    for text in (str(err), repr(err), str(err.args)):
        assert SECRET_VALUE not in text
        assert encoded not in text
    with pytest.raises(KubeError) as read_exc:
        await store.read_data("kube-system", "anything")
    assert read_exc.value.status == 403
    with pytest.raises(KubeError) as del_exc:
        await store.delete("default", name)
    assert del_exc.value.status == 403


async def test_invalid_secret_is_a_named_error(hub_api: ApiClient, namespace: str) -> None:
    """A 422 from validation (bad key) is converted too, and does not echo the value."""
    store = SecretStore(hub_api)
    name = _name()
    with pytest.raises(KubeError) as exc:
        await store.apply(_secret(namespace, name, {"bad key!": SECRET_VALUE.encode()}))
    assert exc.value.status == 422
    assert SECRET_VALUE not in str(exc.value)
    assert base64.b64encode(SECRET_VALUE.encode()).decode() not in str(exc.value)


async def test_unreachable_api_server_is_a_named_error() -> None:
    """No API server: KubeError with status None, quickly, naming the object."""
    from kubernetes_asyncio.client import Configuration

    cfg = Configuration(host="https://127.0.0.1:9")
    cfg.verify_ssl = False
    async with ApiClient(configuration=cfg) as client:
        store = SecretStore(client, request_timeout=5)
        with pytest.raises(KubeError) as exc:
            await store.read_data("datalake", "jupyter-x-rucio")
    assert exc.value.status is None
    assert "Secret datalake/jupyter-x-rucio" in str(exc.value)


async def test_secret_owned_by_pod_goes_with_it(hub_api: ApiClient, namespace: str) -> None:
    """With an ownerReference to the pod, the garbage collector deletes the Secret when the pod goes."""
    core = CoreV1Api(hub_api)
    store = SecretStore(hub_api)
    pod_name = f"jupyter-test-{uuid.uuid4().hex[:8]}"
    pod = await core.create_namespaced_pod(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod_name},
            "spec": {
                "containers": [{"name": "notebook", "image": "quay.io/jupyter/base-notebook:latest"}],
                "nodeSelector": {"datalake.test/no-such-node": "true"},  # stays Pending: deleted at once
                "terminationGracePeriodSeconds": 0,
            },
        },
    )
    name = f"{pod_name}-rucio"
    try:
        await store.apply(_secret(namespace, name, {"token-escape": b"t"}))  # at spawn: no owner yet
        owned = _secret(namespace, name, {"token-escape": b"t2"})
        owned["metadata"]["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Pod", "name": pod_name, "uid": pod.metadata.uid, "blockOwnerDeletion": False}
        ]
        await store.apply(owned)  # after the pod exists: patch adds the owner
        obj = await core.read_namespaced_secret(name, namespace)
        assert [o.uid for o in obj.metadata.owner_references] == [pod.metadata.uid]
    finally:
        await core.delete_namespaced_pod(pod_name, namespace, grace_period_seconds=0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if await store.read_data(namespace, name) is None:
            return
        await asyncio.sleep(0.5)
    await store.delete(namespace, name)
    pytest.fail("the Secret outlived its pod by 60 s (garbage collector not running?)")
