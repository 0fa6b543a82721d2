"""Who may open a Dask dashboard through the gateway's Traefik (hub_config.dask.dashboard_auth).

The decision on the path Traefik forwards (``X-Forwarded-Uri``) and on who asks; the end-to-end
refusals (bob's token, no token) and the owner's view are in tests/integration/test_dask_gateway.py
and tests/e2e/test_dask_dashboard.py.
"""

from __future__ import annotations

import pytest

from hub_config.dask.dashboard_auth import Refused, Requester, dashboard_target, decide

ALICE = Requester("alice")
BOB = Requester("bob")
ADMIN = Requester("root", admin=True)


@pytest.mark.parametrize(
    ("uri", "prefix", "cluster"),
    [
        ("/clusters/datalake.abc123/status", "/", "datalake.abc123"),
        ("/clusters/datalake.abc123/", "/", "datalake.abc123"),
        ("/clusters/datalake.abc123/individual-plots.json?x=/../y", "/", "datalake.abc123"),
        ("/clusters/datalake.abc123", "/", "datalake.abc123"),
        ("/services/dask-gateway/clusters/ns.c1/status", "/services/dask-gateway", "ns.c1"),
        ("/services/dask-gateway/clusters/ns.c1/status", "/services/dask-gateway/", "ns.c1"),
        ("/cl%75sters/ns.c1/status", "/", "ns.c1"),  # Traefik decodes before routing: so do we
        ("/api/v1/clusters/ns.c1", "/", None),  # the API's, authenticated by the API itself
        ("/api/health", "/", None),
        ("/", "/", None),
        ("/clusters/ns.c1/status", "/services/dask-gateway", None),  # not under the prefix: the API's
    ],
)
def test_the_cluster_is_read_from_the_forwarded_path(uri: str, prefix: str, cluster: str | None) -> None:
    assert dashboard_target(uri, prefix) == cluster


@pytest.mark.parametrize(
    "uri",
    [
        "/api/../clusters/ns.bob/status",  # Traefik might clean it into bob's dashboard
        "/clusters/ns.alice/../ns.bob/status",
        "/clusters/ns.alice/%2e%2e/ns.bob/status",
        "/clusters/ns.alice/..%2fns.bob/status",
        "/clusters//ns.bob/status",
        "/clusters/ns.alice/.\\ns.bob",
        "/clusters/",
        "/clusters",
    ],
)
def test_ambiguous_paths_are_refused(uri: str) -> None:
    with pytest.raises(Refused):
        dashboard_target(uri, "/")


@pytest.mark.parametrize(
    ("requester", "owner", "status"),
    [
        (ALICE, "alice", 200),
        (BOB, "alice", 403),
        (None, "alice", 401),
        (ADMIN, "alice", 200),
        (ALICE, None, 403),  # no such cluster: told as little as someone else's
        (ADMIN, None, 404),
        (None, None, 401),
    ],
)
def test_only_the_owner_and_admins_see_a_dashboard(requester: Requester | None, owner: str | None, status: int) -> None:
    assert decide("datalake.c1", requester, owner) == status


@pytest.mark.parametrize("requester", [None, BOB])
def test_api_paths_pass_to_the_api(requester: Requester | None) -> None:
    """Not a dashboard: the gateway API authenticates the call itself (and refuses bob's access to
    alice's cluster there)."""
    assert decide(None, requester, None) == 200


class _Backend:
    """The gateway backend's one call the endpoint makes: a cluster by name (here: alice's c1)."""

    async def get_cluster(self, name: str) -> object | None:
        return type("Cluster", (), {"username": "alice"})() if name == "ns.c1" else None


async def test_the_endpoint_wraps_the_authenticator_a_gateway_uses() -> None:
    """The forwardAuth endpoint on a gateway whose API uses another authenticator (the benchmarks'
    SimpleAuthenticator): the owner passes, another user gets 403, a malformed or missing
    credential 401, API paths pass; served by aiohttp as the gateway serves it."""
    import base64

    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer
    from dask_gateway_server.auth import SimpleAuthenticator

    from hub_config.dask.dashboard_auth import AUTH_PATH, dashboard_authenticator_class

    auth = dashboard_authenticator_class("/", SimpleAuthenticator)(password="pw")
    assert isinstance(auth, SimpleAuthenticator)
    app = web.Application()
    app["backend"] = _Backend()
    await auth.setup(app)

    def basic(user: str, password: str = "pw") -> dict[str, str]:  # noqa: S107 - a test gateway's
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    async with TestClient(TestServer(app)) as client:

        async def status(uri: str, headers: dict[str, str]) -> int:
            resp = await client.get(AUTH_PATH, headers={"X-Forwarded-Uri": uri, **headers})
            return resp.status

        assert await status("/clusters/ns.c1/status", basic("alice")) == 200
        assert await status("/clusters/ns.c1/status", basic("bob")) == 403
        assert await status("/clusters/ns.c1/status", basic("alice", "wrong")) == 401
        assert await status("/clusters/ns.c1/status", {"Authorization": "Basic"}) == 401  # no space
        assert await status("/clusters/ns.c1/status", {"Authorization": "Basic !!notbase64"}) == 401
        assert await status("/clusters/ns.c1/status", {}) == 401
        assert await status("/api/health", {}) == 200
        assert await status("/clusters/../api", basic("alice")) == 400
