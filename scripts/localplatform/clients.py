"""Calling the platform's IdP and Rucio server as the hub and a session do (tests and benchmarks).

One home for these calls, so a test and a benchmark that say "log alice in" do the same thing:
the platform tests, ``tests/support`` and ``benchmarks/`` all import them from here (both put
``scripts`` on ``sys.path``). The IdP and Rucio REST calls are plain ``requests``, no hub
involved; :func:`run_rucio` runs the real ``rucio`` CLI from the notebooks' venv, as a session
does. (The browser's part of a login, the IdP's own forms, is :func:`localplatform.idp.login_via_http`.)

A failed call raises :class:`CallFailed` (a ``requests.RequestException``, so a benchmark's retry
around set-up traffic catches it like a timeout) with the server's answer in its message.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from .idp import TOKEN_EXCHANGE_GRANT, login_via_http
from .rucio_server import client_venv

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "REDIRECT",
    "CallFailed",
    "client_config",
    "code_login",
    "exchange",
    "rucio_get",
    "run_rucio",
]

REDIRECT = "http://127.0.0.1:9/hub/oauth_callback"
"""Nothing listens there: the login stops at the redirect carrying the code."""
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a token type name


class CallFailed(requests.RequestException):
    """The IdP or Rucio did not answer as the hub's flow expects."""


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def code_login(
    info: dict[str, Any],
    username: str,
    password: str,
    *,
    client_id: str,
    client_secret: str,
    scope: str,
    redirect: str = REDIRECT,
    verify: str | None = None,
    timeout: float = 10,
) -> dict[str, Any]:
    """Sign ``username`` in and return the token endpoint's JSON (access, refresh and id tokens).

    Authorization code + PKCE with ``prompt=consent`` (so a refresh token is issued), then the code
    is redeemed with the confidential client's credentials: what the hub does. ``info`` is the
    platform's ``idp`` section; ``verify`` defaults to its CA bundle (a benchmark passes the IdP's
    CA alone, cheaper to load under load).
    """
    verify = verify or info["ca_bundle"]
    session = requests.Session()
    session.verify = verify
    verifier, challenge = _pkce()
    query = {
        "client_id": client_id,
        "redirect_uri": redirect,
        "response_type": "code",
        "scope": scope,
        "state": "st",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "prompt": "consent",
    }
    start = f"{info['authorization_endpoint']}?{urlencode(query)}"
    resp = login_via_http(session, start, username, password, stop_at=redirect)
    if not resp.is_redirect:
        raise CallFailed(f"login of {username} did not reach the redirect: {resp.text[:500]}")
    params = parse_qs(urlsplit(resp.headers["location"]).query)
    if params.get("iss") != [info["issuer"]]:  # RFC 9207: the IdP names its issuer on the redirect
        raise CallFailed(f"redirect names issuer {params.get('iss')}, not {info['issuer']}")
    data = {"grant_type": "authorization_code", "code": params["code"][0], "redirect_uri": redirect}
    token = requests.post(
        info["token_endpoint"],
        auth=(client_id, client_secret),
        data={**data, "code_verifier": verifier},
        verify=verify,
        timeout=timeout,
    )
    if token.status_code != 200:
        raise CallFailed(f"code redemption: HTTP {token.status_code}: {token.text[:500]}")
    body: dict[str, Any] = token.json()
    return body


def exchange(
    info: dict[str, Any], subject_token: str, *, client_id: str, client_secret: str, **extra: str
) -> requests.Response:
    """An RFC 8693 token exchange at the IdP, as the hub's pre-spawn step sends it.

    Returns the raw answer: the tests look at refusals as closely as at successes. ``extra`` adds
    form fields (``audience``, ``scope``).
    """
    return requests.post(
        info["token_endpoint"],
        auth=(client_id, client_secret),
        data={
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "subject_token": subject_token,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            **extra,
        },
        verify=info["ca_bundle"],
        timeout=10,
    )


def rucio_get(rucio: dict[str, Any], path: str, token: str, *, auth: bool = False) -> requests.Response:
    """``GET`` a Rucio REST path with a token, as the client and the JupyterLab extension send it.

    ``rucio`` is the platform's ``rucio`` section; ``auth=True`` goes to its auth server (e.g.
    ``/auth/validate``). The raw answer: the CLI would turn a 401 into an interactive prompt.
    """
    base = rucio["auth_url"] if auth else rucio["url"]
    return requests.get(f"{base}{path}", headers={"X-Rucio-Auth-Token": token}, timeout=30)


def client_config(
    section: dict[str, Any], token_file: str | os.PathLike[str], account: str | None = None, ca_cert: str | None = None
) -> str:
    """A minimal client ``rucio.cfg`` for a token file, as a notebook would get one.

    ``auth_token_file_path`` must be absolute (the client does not expand ``~``), and the file must
    hold the raw JWT without a trailing newline. ``account`` is informational for JWTs (the server
    maps the token's identity to the account), but the client sends it, so keep it right.
    """
    token_path = os.path.abspath(os.fspath(token_file))
    lines = [
        "[client]",
        f"rucio_host = {section['url']}",
        f"auth_host = {section['auth_url']}",
        "auth_type = oidc",
        f"auth_token_file_path = {token_path}",
        f"account = {account or 'root'}",
        f"ca_cert = {ca_cert or section.get('ca_bundle') or '/etc/ssl/certs/ca-certificates.crt'}",
        "request_retries = 1",
    ]
    return "\n".join(lines).replace("%", "%%") + "\n"


def run_rucio(
    section: dict[str, Any], args: Sequence[str], rucio_cfg_path: str | os.PathLike[str], timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run the ``rucio`` CLI from the client venv against ``rucio_cfg_path``, as a notebook would.

    The environment drops every ``BEARER_TOKEN*`` variable and ``X509_CERT_DIR`` (the client prefers
    them over the config file) and points ``XDG_RUNTIME_DIR`` at an empty place, so only the token
    file named in the config can be used. ``section`` is accepted for symmetry and future use.
    """
    del section
    venv = client_venv()
    cfg = Path(rucio_cfg_path).resolve()
    runtime = cfg.parent / ".xdg-runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BEARER_TOKEN") and k not in {"X509_CERT_DIR", "RUCIO_HOME", "VIRTUAL_ENV"}
    }
    env.update(
        RUCIO_CONFIG=str(cfg),
        XDG_RUNTIME_DIR=str(runtime),
        PATH=f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
    )
    return subprocess.run(
        [str(venv / "bin" / "rucio"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
