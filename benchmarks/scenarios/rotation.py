"""Token rotation at scale: N running sessions with short token lifetimes, for one lifetime or more.

What is real: the IdP (login, refresh grant, userinfo and RFC 8693 exchange at its token endpoint),
the API server (Secrets created and patched with the hub ServiceAccount's RBAC), and every piece of
our code on the path — ``DatalakeOAuthenticator.refresh_user``, ``DatalakeSpawner._rotate_rucio`` and
``_provision``, ``RucioProvisioner``, ``SecretStore``, ``Rotator``. What is driven: the sessions. One
process stands in for the hub (a thousand notebook pods do not fit here): each session is a user
with its IdP tokens in memory (as the hub's decrypted auth state) and a server whose Secret was
written at "spawn", tracked by the same Rotator the hub runs. The process does nothing else, so its
CPU time during the window is the rotation's cost in a hub.

Counted: Kubernetes writes from the API server's ``apiserver_request_total`` (Secrets, by verb and
code); IdP calls at the HTTP client (every request the process sends to the IdP, by endpoint and
grant); CPU from the process's own CPU time; rotation lag = time the Secret was patched minus the
moment the token entered the rotation margin.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from kubernetes_asyncio import client as kclient
from kubernetes_asyncio import config as kconfig
from localplatform.clients import REDIRECT, code_login
from localplatform.idp import register_client
from tornado.httpclient import AsyncHTTPClient
from traitlets.config import Config

from hub_config.auth.authenticator import DatalakeOAuthenticator
from hub_config.auth.configure import apply_auth
from hub_config.auth.discovery import OIDCEndpoints
from hub_config.rucio_service import Rotator, RucioProvisioner, ServerRucio
from hub_config.settings.model import Settings

from ..stack import PROFILES, Kube, bench_rucio_instance
from ..stats import summary

BENCH_PROFILE = PROFILES / "bench.yaml"

__all__ = ["rotation"]

SCOPE = "openid profile email offline_access wlcg.groups"
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE")


def _login_retrying(idp: dict[str, Any], client_id: str, secret: str, user: dict[str, Any]) -> dict[str, Any]:
    """Set-up, not measured: the single-threaded test IdP may time out under load; try three times."""
    for attempt in range(3):
        try:
            # Set-up traffic: the IdP's CA alone is cheaper to load (see stack.client_ca).
            return code_login(
                idp,
                user["username"],
                user["password"],
                client_id=client_id,
                client_secret=secret,
                scope=SCOPE,
                verify=idp["ca"],
                timeout=30,
            )
        except requests.RequestException:
            if attempt == 2:
                raise
            time.sleep(2)
    raise AssertionError("unreachable")


class _User:
    """What the rotation path uses of a JupyterHub ``User``: name, authenticator, auth state."""

    def __init__(self, name: str, authenticator: Any, auth_state: dict[str, Any]) -> None:
        self.name = name
        self.authenticator = authenticator
        self._state = auth_state

    async def get_auth_state(self) -> dict[str, Any]:
        return self._state

    async def save_auth_state(self, state: dict[str, Any]) -> None:
        self._state = state


def _server(user: _User, namespace: str, provisioner: RucioProvisioner, api_client: Any, profile: Any) -> ServerRucio:
    """The Rucio lifecycle ``DatalakeSpawner`` creates per server, for a server of ``profile``."""

    async def profile_of() -> Any:
        return profile

    return ServerRucio(
        provisioner,
        None,
        api_client=api_client,
        namespace=namespace,
        pod_name=f"rot-{user.name}",
        user=user,
        profile_of=profile_of,
    )


class _IdPCalls:
    """Counts every request this process sends to the IdP (tornado's client: OAuthenticator and ours)."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self.counts: dict[str, int] = {}
        self._orig = AsyncHTTPClient.fetch

    def install(self) -> None:
        counts, issuer, orig = self.counts, self.issuer, self._orig

        def fetch(client: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            url = request if isinstance(request, str) else request.url
            if url.startswith(issuer):
                kind = urlsplit(url).path.strip("/") or "/"
                body = getattr(request, "body", None)
                if kind == "token" and body:
                    grant = parse_qs(body.decode() if isinstance(body, bytes) else body).get("grant_type", ["?"])[0]
                    kind = f"token:{grant.rsplit(':', 1)[-1]}"
                counts[kind] = counts.get(kind, 0) + 1
            return orig(client, request, *args, **kwargs)

        AsyncHTTPClient.fetch = fetch  # type: ignore[method-assign]

    def uninstall(self) -> None:
        AsyncHTTPClient.fetch = self._orig  # type: ignore[method-assign]


def _settings(info: dict[str, Any], client_id: str, margin: int, interval: int, concurrency: int) -> Settings:
    idp = info["idp"]
    return Settings.model_validate(
        {
            "iam": {
                "issuer": idp["issuer"],
                "client_id": client_id,
                "client_secret": {"env": "DATALAKE_BENCH_UNUSED"},
                "allowed_groups": ["escape"],
                "ca_bundle": idp["ca_bundle"],
            },
            "rucio": {
                "instances": [bench_rucio_instance(info)],
                "refresh_margin_seconds": margin,
                "check_interval_seconds": interval,
                "max_concurrent_rotations": concurrency,
            },
        }
    )


def rotation(
    info: dict[str, Any],
    users: list[dict[str, Any]],
    *,
    ttl: int,
    margin: int,
    interval: int,
    window: float,
    concurrency: int = 8,
) -> dict[str, Any]:
    """Log ``users`` in, give each a Secret, rotate for ``window`` seconds; return the counts."""
    idp = info["idp"]
    client_id = "datalake-bench-rotation"
    secret = secrets.token_urlsafe(32)
    register_client(info, client_id, secret, [REDIRECT], access_token_ttl=ttl)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        tokens = list(pool.map(lambda u: _login_retrying(idp, client_id, secret, u), users))
    login_seconds = time.monotonic() - started
    settings = _settings(info, client_id, margin, interval, concurrency)
    http_client = _http_client_as_in_the_hub()
    result = asyncio.run(_run(info, settings, secret, users, tokens, window))
    return {
        "sessions": len(users),
        "ttl_s": ttl,
        "margin_s": margin,
        "check_interval_s": interval,
        "setup_logins_s": round(login_seconds, 1),
        "http_client": http_client,
        **result,
    }


class _Hub:
    """The hub's side of rotation, built as the hub builds it from the same settings."""

    def __init__(self, info: dict[str, Any], settings: Settings, client_secret: str) -> None:
        idp = info["idp"]
        endpoints = OIDCEndpoints(
            authorize_url=idp["authorization_endpoint"],
            token_url=idp["token_endpoint"],
            userdata_url=idp["userinfo_endpoint"],
            end_session_url=None,
            jwks_uri=idp["jwks_uri"],
        )
        c = Config()
        apply_auth(c, settings.iam, endpoints=endpoints, client_secret=client_secret)
        self.authenticator = DatalakeOAuthenticator(config=c)
        self.provisioner = RucioProvisioner(
            settings,
            token_url=idp["token_endpoint"],
            client_id=settings.iam.client_id,
            client_secret=client_secret,
            ca_bundle=idp["ca_bundle"],
        )
        rucio = settings.rucio
        self.rotator = Rotator(
            margin=rucio.refresh_margin_seconds,
            interval=rucio.check_interval_seconds,
            concurrency=rucio.max_concurrent_rotations,
        )
        from hub_config.profiles.loader import load_profile_text

        self.profile = load_profile_text((BENCH_PROFILE).read_text(), "bench.yaml").profile
        self.namespace = info["controlplane"]["namespace"]
        self.lags: list[float] = []
        self.failures: list[str] = []

    def servers(
        self, users: list[dict[str, Any]], tokens: list[dict[str, Any]], api_client: Any
    ) -> list[tuple[_User, ServerRucio]]:
        """One server per user, its IdP tokens in memory as the hub's decrypted auth state."""
        servers = []
        for u, tok in zip(users, tokens, strict=True):
            state = {
                "access_token": tok["access_token"],
                "refresh_token": tok.get("refresh_token"),
                "id_token": tok.get("id_token"),
                "oauth_user": {"preferred_username": u["username"], "sub": u["sub"]},
            }
            user = _User(u["username"], self.authenticator, state)
            servers.append((user, _server(user, self.namespace, self.provisioner, api_client, self.profile)))
        return servers

    def _timed(self, server: ServerRucio) -> tuple[str, Any]:
        """The rotation the Rotator calls, recording its lag behind the due time and its failures."""
        key = server.key

        async def rotate() -> float | None:
            tracked = self.rotator.tracked(key)
            due = tracked.expires_at - self.rotator.margin if tracked and tracked.expires_at else None
            try:
                exp = await server.rotate()
            except Exception as err:
                self.failures.append(type(err).__name__)
                raise
            if due is not None:
                self.lags.append(time.time() - due)
            return exp

        return key, rotate

    async def spawn(self, user: _User, server: ServerRucio, sem: asyncio.Semaphore) -> None:
        """What the hub does at spawn: refresh if due, provision the Secret, hand it to the Rotator."""
        async with sem:
            # As the hub does before a spawn (refresh_pre_spawn): a token that expired while the
            # other sessions were logging in is refreshed first.
            await self.authenticator.refresh_user(user)
            result = await server.provision(self.profile)
        if not result.instances:
            self.failures.append("provision:" + ";".join(result.warnings)[:80])
            return
        key, rotate = self._timed(server)
        self.rotator.track(key, rotate, result.expires_at)


async def _window(info: dict[str, Any], seconds: float) -> tuple[dict[str, int], dict[str, int], float, float]:
    """Let the Rotator work for ``seconds``; return the API's request-count delta, IdP calls, CPU, wall."""
    kube = Kube(info)
    calls = _IdPCalls(info["idp"]["issuer"])
    loop = asyncio.get_running_loop()
    before = await loop.run_in_executor(None, kube.request_counts)
    calls.install()
    cpu0, wall0 = time.process_time(), time.monotonic()
    try:
        await asyncio.sleep(seconds)
    finally:
        cpu = time.process_time() - cpu0
        wall = time.monotonic() - wall0
        calls.uninstall()
    after = await loop.run_in_executor(None, kube.request_counts)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) - before.get(k, 0)}
    return delta, calls.counts, cpu, wall


async def _run(
    info: dict[str, Any],
    settings: Settings,
    client_secret: str,
    users: list[dict[str, Any]],
    tokens: list[dict[str, Any]],
    window: float,
) -> dict[str, Any]:
    hub = _Hub(info, settings, client_secret)
    kcfg = kclient.Configuration()
    await kconfig.load_kube_config(config_file=info["controlplane"]["hub_kubeconfig"], client_configuration=kcfg)
    api_client = kclient.ApiClient(kcfg)
    servers = hub.servers(users, tokens, api_client)

    # "Spawn": every server gets its Secret (bounded, like a storm would), then is tracked.
    sem = asyncio.Semaphore(16)
    t = time.monotonic()
    await asyncio.gather(*(hub.spawn(u, s, sem) for u, s in servers))
    spawn_seconds = time.monotonic() - t

    delta, idp_calls, cpu, wall = await _window(info, window)
    await hub.rotator.close()
    # Clean up the Secrets (label set by ServerRucio.provision: datalake-hub.io/server=rot-...).
    await asyncio.get_running_loop().run_in_executor(None, Kube(info).delete_secrets, "datalake-hub.io/server")
    await api_client.close()

    writes = sum(v for k, v in delta.items() if k.split()[0] in WRITE_VERBS)
    n = len(servers)
    lifetimes = wall / settings_ttl(tokens)
    idp_total = sum(idp_calls.values())
    rotations = len(hub.lags)
    failures = hub.failures
    return {
        "spawn_provision_s": round(spawn_seconds, 1),
        "window_s": round(wall, 1),
        "rotations": rotations,
        "rotation_failures": {f: failures.count(f) for f in set(failures)},
        "k8s_secret_requests": delta,
        "k8s_writes": writes,
        "k8s_writes_per_user_per_lifetime": round(writes / n / lifetimes, 3),
        "k8s_writes_per_rotation": round(writes / rotations, 3) if rotations else None,
        "idp_calls": idp_calls,
        "idp_calls_per_user_per_lifetime": round(idp_total / n / lifetimes, 3),
        "idp_calls_per_rotation": round(idp_total / rotations, 3) if rotations else None,
        "cpu_share_of_core": round(cpu / wall, 4),
        "rotation_lag_s": summary(hub.lags, 2),
    }


def _http_client_as_in_the_hub() -> str:
    """Make tornado's client the one the hub runs: JupyterHub picks pycurl when installed (z2jh image)."""
    try:
        AsyncHTTPClient.configure("tornado.curl_httpclient.CurlAsyncHTTPClient")
    except ImportError:
        return "tornado simple_httpclient (pycurl not installed)"
    return "tornado curl_httpclient (pycurl), as in the z2jh hub image"


def settings_ttl(tokens: list[dict[str, Any]]) -> float:
    """The access-token lifetime the IdP actually granted (``expires_in`` at login)."""
    return float(tokens[0].get("expires_in") or 0) or 1.0
