"""A real Rucio server (PyPI ``rucio`` 41.5.1) on loopback, trusting the local platform's IdP.

Why a real server: the product's promise is that ``rucio whoami`` answers with the user's account
inside a notebook. Only a real server checks what matters: issuer string (trailing slash
included), JWKS signature, ``aud`` ∋ ``rucio``, ``scope`` ⊇ ``openid profile``, the
``SUB=..., ISS=...`` identity mapping. A fake would pass tokens production refuses.

Layout: its own venv (``~/.cache/datalake-hub/venvs/rucio-server-<hash>``; its pins clash with
rucio-clients'), everything else under ``<state>/rucio_server/``: the server ``rucio.cfg``, the
alembic.ini, ``idpsecrets.json``, the SQLite DB and the RSEs' directories (``rse/<rse>``), each served
over HTTPS by a WebDAV server of :mod:`localplatform.rucio_storage`. The server loads our policy
package (``rucio/policy/datalake_rucio_policy``). Each fresh start rebuilds the DB (about a second)
from the IdP's fixture users, so a new IdP issuer or user set never meets stale identities (a
pristine copy of the bootstrapped DB is kept per state dir, so a warm start skips even that). ``up``
is idempotent: a running server (and storage) started for the same inputs is reused.

Section (``platform.json["rucio_server"]``): ``url``, ``auth_url`` (same server), ``pid``, ``rse``
(``LOCAL_EOS``, the RSE behind the EOS mount), ``rse_dir`` (its WebDAV root, which the hub mounts at
``/eos/lake``), ``user_rse`` (``LOCAL_USERDISK``, where users upload), ``rses`` {rse: {``url``,
``scheme``, ``hostname``, ``port``, ``prefix``, ``dir``, ``eos_mount``, ``user_upload``, ``pid``,
``log``}} (PFNs are ``https://127.0.0.1:<port><prefix><scope path>/<name>``, ``user.alice`` →
``user/alice``), ``accounts`` {username: account}, ``skipped_users`` {username: Rucio's reason},
``scopes`` {account: scope}, ``dids``, ``files`` {scope:name: path on LOCAL_EOS's disk},
``remote_files`` {scope:name: path on LOCAL_USERDISK's disk}, ``rules`` {dataset: RSE},
``shared_scope``, ``issuer`` (as trusted, = ``iss`` in tokens), ``ca_bundle``, ``audience``, ``venv``,
``config`` (server rucio.cfg), ``log``, ``root`` {account, username, password} (userpass),
``fingerprint``.

Tests act as a notebook's ``rucio`` CLI with :func:`localplatform.clients.run_rucio`.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import logging
import os
import secrets
import shutil
import string
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from . import rucio_storage
from .base import CACHE_DIR, PlatformError, Proc, free_port, spawn, stop_pidfile, wait_http, write_json
from .idp_tls import ensure_tls

__all__ = [
    "NAME",
    "RSE_NAME",
    "client_venv",
    "down",
    "ensure_server_venv",
    "fixture_users",
    "up",
]

log = logging.getLogger("localplatform.rucio_server")

NAME = "rucio_server"
HERE = Path(__file__).with_name("rucio")
REQUIREMENTS = HERE / "requirements.txt"
"""Fully pinned server requirements (``pip freeze`` of ``rucio==41.5.1``); installed with ``--no-deps``."""
CLIENT_REQUIREMENTS = HERE / "client-requirements.txt"
"""Fallback client venv's pins, used only when the node agent's session venv module is missing."""
BOOTSTRAP = HERE / "bootstrap.py"
POLICY_DIR = HERE / "policy"
"""Holds ``datalake_rucio_policy``, the server's policy package (on its ``PYTHONPATH``)."""
RSE_NAME = rucio_storage.EOS_RSE
USER_RSE = rucio_storage.USER_RSE
SHARED_SCOPE = "datalake"
ROOT_USERNAME = "datalake-root"
IDP_CLIENT_ID = "rucio-server"

_READY = ".ready"
"""Marker written last, so an interrupted venv build is discarded, never used."""
_INSTALL_TIMEOUT = 1200.0
_START_TIMEOUT = 90.0


# --------------------------------------------------------------------------- venvs


def _python312() -> str:
    """pyenv's newest 3.12 if present (the version the notebook image and hub run), else this one."""
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")))
    if candidates:
        return candidates[-1]
    return shutil.which("python3.12") or sys.executable


def build_venv(prefix: str, requirements: Path, cache: Path | None = None) -> Path:
    """Build (once) a venv named ``<prefix>-<hash of requirements and interpreter>``; return its path.

    Built in place (a venv cannot move: its scripts' shebangs name it) under a file lock, with the
    ``.ready`` marker written last, so concurrent callers wait and half-built venvs are rebuilt.
    """
    python = _python312()
    digest = hashlib.sha256(requirements.read_bytes())
    digest.update(os.path.realpath(python).encode())
    root = (cache or CACHE_DIR) / "venvs"
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{prefix}-{digest.hexdigest()[:12]}"
    if (target / _READY).exists():
        return target
    with open(root / f".{prefix}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / _READY).exists():
            return target
        shutil.rmtree(target, ignore_errors=True)
        started = time.monotonic()
        log.info("building %s from %s (a few minutes, once)", target, python)
        pip = [str(target / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "--quiet"]
        try:
            subprocess.run([python, "-m", "venv", str(target)], check=True, timeout=300)
            subprocess.run(
                [*pip, "install", "--no-deps", "-r", str(requirements)],
                check=True,
                timeout=_INSTALL_TIMEOUT,
                capture_output=True,
                text=True,
            )
        except subprocess.CalledProcessError as err:
            shutil.rmtree(target, ignore_errors=True)
            raise PlatformError(f"building {target.name} failed: {err}\n{err.stdout}{err.stderr}") from err
        except subprocess.TimeoutExpired as err:
            shutil.rmtree(target, ignore_errors=True)
            raise PlatformError(f"building {target.name} timed out: {err}") from err
        (target / _READY).write_text(f"{python}\n{requirements.read_text()}")
        log.info("%s ready in %.0fs", target.name, time.monotonic() - started)
    return target


def ensure_server_venv(cache: Path | None = None) -> Path:
    """The Rucio server's venv (``rucio==41.5.1`` and its pinned dependencies)."""
    return build_venv("rucio-server", REQUIREMENTS, cache)


def client_venv() -> Path:
    """A venv with ``rucio-clients`` 41.5.1: the notebooks' session venv, so tests use what users get.

    Falls back to a small venv of our own if the node agent's ``sessionenv`` module is absent.
    """
    try:
        from . import sessionenv
    except ImportError:
        return build_venv("rucio-clients", CLIENT_REQUIREMENTS)
    return Path(sessionenv.ensure_session_venv())


# --------------------------------------------------------------------------- config


def _paths(state: Path) -> dict[str, Path]:
    home = state / NAME
    return {
        "home": home,
        "cfg": home / "rucio.cfg",
        "alembic": home / "alembic.ini",
        "idpsecrets": home / "idpsecrets.json",
        "db": home / "rucio.db",
        "spec": home / "bootstrap-spec.json",
        "result": home / "bootstrap-result.json",
        "section": home / "section.json",
        "dbcache": home / "db-cache",
        "rse_root": home / "rse",
        "rse_dir": home / "rse" / RSE_NAME.lower(),
        "logdir": state / "logs",
        "pidfile": state / "pids" / f"{NAME}.pid",
    }


def _render(template: str, **values: str) -> str:
    return string.Template((HERE / template).read_text()).substitute(values)


def fixture_users(idp: dict[str, Any]) -> list[dict[str, Any]]:
    """The IdP's fixture users as ``{"username", "account", "sub", "email"}``.

    The account is ``preferred_username`` unless the fixture names an explicit ``rucio_account``
    (ESCAPE IAM usernames and Rucio account names are not the same namespace in production either).
    """
    users_file = idp.get("users_file")
    if not users_file:
        return []
    raw = json.loads(Path(users_file).read_text())
    entries = raw.get("users", raw) if isinstance(raw, dict) else raw
    if isinstance(entries, dict):
        entries = [{"sub": key, **value} for key, value in entries.items()]
    users = []
    for entry in entries:
        username = entry.get("preferred_username") or entry.get("username")
        sub = entry.get("sub") or entry.get("id") or username
        if not username or not sub:
            log.warning("IdP fixture entry without username or sub ignored: %r", sorted(entry))
            continue
        users.append(
            {
                "username": str(username),
                "account": str(entry.get("rucio_account") or username),
                "sub": str(sub),
                "email": entry.get("email"),
            }
        )
    return users


def _redirect_uris(url: str) -> list[str]:
    return [f"{url}/auth/oidc_token", f"{url}/auth/oidc_code"]


def _idp_client(idp: dict[str, Any], url: str) -> dict[str, Any]:
    """Register Rucio's own client at the IdP (as an IAM admin would); placeholders if that fails.

    Rucio only uses these credentials for its own browser login flow and for introspecting
    tokens that lack ``aud``/``scope``; validating the exchanged JWTs the notebooks send needs
    only the issuer's JWKS, so a refused registration is logged, not fatal.
    """
    secret = secrets.token_urlsafe(24)
    try:
        from . import idp as idp_module

        idp_module.register_client(idp, IDP_CLIENT_ID, secret, _redirect_uris(url))
    except (ImportError, PlatformError, OSError, KeyError) as err:
        log.warning(
            "could not register %s at the IdP (%s); Rucio's own OIDC login flow will not work", IDP_CLIENT_ID, err
        )
    return {"client_id": IDP_CLIENT_ID, "client_secret": secret}


def _idpsecrets(issuer: str, client: dict[str, Any], url: str) -> dict[str, Any]:
    """idpsecrets.json: the issuer exactly as it appears in tokens, plus the SCIM entry Rucio requires.

    Without a ``SCIM`` sub-object Rucio's client loading fails and every JWT is rejected.
    """
    creds = {"client_id": client["client_id"], "client_secret": client.get("client_secret", "")}
    return {
        "localidp": {
            "issuer": issuer,
            **creds,
            "redirect_uris": _redirect_uris(url),
            "SCIM": dict(creds),
        }
    }


def _migrate_repo(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages/rucio/db/sqla/migrate_repo"))
    if not found:
        raise PlatformError(f"no rucio/db/sqla/migrate_repo in {venv}")
    return found[0]


def _write_config(state: Path, venv: Path, idp: dict[str, Any], port: int, password: str) -> dict[str, Path]:
    paths = _paths(state)
    paths["home"].mkdir(parents=True, exist_ok=True)
    paths["logdir"].mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    oidc = ""
    if idp.get("issuer"):
        secrets_doc = _idpsecrets(str(idp["issuer"]), _idp_client(idp, url), url)
        paths["idpsecrets"].write_text(json.dumps(secrets_doc, indent=2))
        paths["idpsecrets"].chmod(0o600)
        oidc = (
            "[oidc]\n"
            f"idpsecrets = {paths['idpsecrets']}\n"
            "admin_issuer = localidp\n"
            "expected_audience = rucio\n"
            "expected_scope = openid profile\n"
        )
    paths["alembic"].write_text(
        _render("alembic.ini.template", migrate_repo=str(_migrate_repo(venv)), db=str(paths["db"]))
    )
    paths["cfg"].write_text(
        _render(
            "rucio.cfg.template",
            logdir=str(paths["logdir"]),
            loglevel=os.environ.get("DATALAKE_RUCIO_LOGLEVEL", "INFO"),
            db=str(paths["db"]),
            alembic_ini=str(paths["alembic"]),
            root_username=ROOT_USERNAME,
            root_password=password,
            oidc_section=oidc,
        )
    )
    paths["cfg"].chmod(0o600)
    return paths


def _server_env(paths: dict[str, Path], venv: Path, idp: dict[str, Any]) -> dict[str, str]:
    """Environment of the server and bootstrap: its config, and trust in the IdP's CA.

    ``REQUESTS_CA_BUNDLE`` is for the OIDC library's discovery/JWKS fetches; ``CURL_CA_BUNDLE``
    for the ``curl`` Rucio shells out to when introspecting tokens without ``aud``/``scope``.
    """
    env = {
        "RUCIO_CONFIG": str(paths["cfg"]),
        "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(POLICY_DIR),
    }
    bundle = idp.get("ca_bundle") or idp.get("ca")
    if bundle:
        env["REQUESTS_CA_BUNDLE"] = str(bundle)
        env["CURL_CA_BUNDLE"] = str(bundle)
        env["SSL_CERT_FILE"] = str(bundle)
    return env


def _fingerprint(idp: dict[str, Any], users: list[dict[str, Any]], venv: Path) -> str:
    """What a running server was started for; if any of it changed, ``up`` restarts from scratch."""
    digest = hashlib.sha256()
    for part in (
        json.dumps({k: idp.get(k) for k in ("issuer", "ca_bundle", "ca")}, sort_keys=True, default=str),
        json.dumps(users, sort_keys=True),
        str(venv),
        BOOTSTRAP.read_text(),
        (HERE / "rucio.cfg.template").read_text(),
        *(p.read_text() for p in sorted(POLICY_DIR.rglob("*.py"))),
        (HERE / "webdav_server.py").read_text(),
    ):
        digest.update(part.encode())
    return digest.hexdigest()[:16]


def _ping(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=2) as resp:  # noqa: S310 - loopback http
            return bool(resp.status == 200)
    except OSError:
        return False


# --------------------------------------------------------------------------- up / down


def _bootstrap(venv: Path, paths: dict[str, Path], env: dict[str, str]) -> dict[str, Any]:
    """Run ``rucio/bootstrap.py`` in the server venv; return its result (accounts, skipped users, DIDs)."""
    boot = subprocess.run(
        [str(venv / "bin" / "python"), str(BOOTSTRAP), str(paths["spec"]), str(paths["result"])],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if boot.returncode != 0:
        raise PlatformError(f"rucio bootstrap failed ({boot.returncode}):\n{boot.stdout}{boot.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(paths["result"].read_text())
    for username, reason in result["skipped"].items():
        log.warning("fixture user %s has no Rucio account: %s", username, reason)
    return result


def _bootstrap_key(spec: dict[str, Any], venv: Path) -> str:
    """Everything a bootstrapped DB depends on (not the port: that only reaches the config files)."""
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode())
    digest.update(BOOTSTRAP.read_bytes())
    digest.update(str(venv).encode())
    return digest.hexdigest()[:16]


def _cached_bootstrap(paths: dict[str, Path], key: str) -> dict[str, Any] | None:
    """A DB bootstrapped earlier for the same inputs in this state dir, with its root password.

    Reusing it skips the bootstrap process (a few CPU-seconds of imports) on warm starts; it is
    only taken if the sample files it registered are still on the RSE.
    """
    meta = paths["dbcache"] / f"{key}.json"
    if not (meta.exists() and (paths["dbcache"] / f"{key}.db").exists()):
        return None
    cached: dict[str, Any] = json.loads(meta.read_text())
    result = cached["result"]
    if not all(Path(f).exists() for f in [*result["files"].values(), *result.get("remote_files", {}).values()]):
        return None
    return cached


def _store_bootstrap(paths: dict[str, Path], key: str, password: str, result: dict[str, Any]) -> None:
    """Keep a pristine copy of the fresh DB (before the server's first request) for the next start."""
    shutil.rmtree(paths["dbcache"], ignore_errors=True)
    paths["dbcache"].mkdir(mode=0o700, parents=True)
    shutil.copyfile(paths["db"], paths["dbcache"] / f"{key}.db")
    meta = paths["dbcache"] / f"{key}.json"
    meta.write_text(json.dumps({"password": password, "result": result}))
    meta.chmod(0o600)


def _reusable(paths: dict[str, Path], fingerprint: str) -> dict[str, Any] | None:
    """The running server's section, if it was set up from the same IdP, users and venv (and its
    storage servers still run)."""
    if not (paths["section"].exists() and paths["pidfile"].exists()):
        return None
    previous: dict[str, Any] = json.loads(paths["section"].read_text())
    fresh = previous.get("fingerprint") == fingerprint and rucio_storage.running(previous.get("rses") or {})
    if fresh and _ping(previous["url"]):
        log.info("rucio server already up at %s", previous["url"])
        return previous
    return None


def _fresh_db(paths: dict[str, Path], key: str, cached: dict[str, Any] | None) -> None:
    """Start from the cached bootstrapped DB when there is one, else from nothing (and no RSE files).

    With the cached DB, files a previous run uploaded are removed from the RSEs' disks: the pristine
    DB does not know them, and a storage holding unregistered files refuses a new upload of that name.
    """
    paths["db"].unlink(missing_ok=True)
    if cached:
        shutil.copyfile(paths["dbcache"] / f"{key}.db", paths["db"])
        result = cached["result"]
        keep = {str(Path(f)) for f in [*result["files"].values(), *result.get("remote_files", {}).values()]}
        for path in sorted(paths["rse_root"].rglob("*"), reverse=True):
            if path.is_file() and str(path) not in keep:
                path.unlink()
    else:
        shutil.rmtree(paths["rse_root"], ignore_errors=True)
        paths["rse_dir"].mkdir(parents=True)


def _storage_tls(paths: dict[str, Path], idp: dict[str, Any]) -> tuple[Path, Path, Path]:
    """The IdP's CA and server certificate (valid for 127.0.0.1 on any port), else a CA of our own.

    Sessions and the hub already trust the IdP's CA (``ca_bundle``), so they trust the storage too.
    """
    if idp.get("ca"):
        return ensure_tls(Path(idp["ca"]).parent, rucio_storage.HOST)
    tls = paths["home"] / "tls"
    tls.mkdir(mode=0o700, exist_ok=True)
    return ensure_tls(tls, rucio_storage.HOST)


def _spawn_server(state: Path, venv: Path, port: int, env: dict[str, str], home: Path) -> Proc:
    """The REST API under flask's own server: enough for one test run, and quick to start."""
    return spawn(
        NAME,
        [
            venv / "bin" / "flask",
            "--app",
            "rucio.web.rest.flaskapi.v1.main:application",
            "run",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-reload",
        ],
        state,
        env=env,
        cwd=home,
    )


def _section(
    url: str,
    proc: Proc,
    paths: dict[str, Path],
    venv: Path,
    idp: dict[str, Any],
    result: dict[str, Any],
    rses: dict[str, Any],
) -> dict[str, Any]:
    """What tests and the hub need to reach the server and know who is in it."""
    return {
        "url": url,
        "auth_url": url,
        "pid": proc.pid,
        "rse": RSE_NAME,
        "rse_dir": str(paths["rse_dir"]),
        "user_rse": USER_RSE,
        "rses": rses,
        "rules": result.get("rules", {}),
        "remote_files": result.get("remote_files", {}),
        "accounts": result["accounts"],
        "skipped_users": result["skipped"],
        "scopes": result["scopes"],
        "dids": result["dids"],
        "files": result["files"],
        "shared_scope": SHARED_SCOPE,
        "issuer": idp.get("issuer"),
        "ca_bundle": str(idp.get("ca_bundle") or idp.get("ca") or "") or None,
        "audience": "rucio",
        "venv": str(venv),
        "config": str(paths["cfg"]),
        "log": str(proc.log),
    }


def up(state: Path, info: dict[str, Any]) -> dict[str, Any]:
    """Start (or reuse) the server; return the ``rucio_server`` section of ``platform.json``."""
    idp: dict[str, Any] = dict(info.get("idp") or {})
    paths = _paths(state)
    venv = ensure_server_venv()
    users = fixture_users(idp)
    fingerprint = _fingerprint(idp, users, venv)
    reused = _reusable(paths, fingerprint)
    if reused is not None:
        return reused
    down(state)
    started = time.monotonic()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    paths["home"].mkdir(parents=True, exist_ok=True)
    endpoints = rucio_storage.plan(paths["home"])
    spec = {
        "rse": RSE_NAME,
        "user_rse": USER_RSE,
        "rses": {
            name: {k: e[k] for k in ("hostname", "port", "prefix", "dir", "user_upload")}
            for name, e in endpoints.items()
        },
        "issuer": idp.get("issuer"),
        "users": users,
        "shared_scope": SHARED_SCOPE,
    }
    key = _bootstrap_key(spec, venv)
    cached = _cached_bootstrap(paths, key)
    password = cached["password"] if cached else secrets.token_hex(16)
    paths = _write_config(state, venv, idp, port, password)
    env = _server_env(paths, venv, idp)
    _fresh_db(paths, key, cached)
    paths["spec"].write_text(json.dumps(spec, indent=2))
    rses = rucio_storage.up(state, endpoints, _storage_tls(paths, idp))
    # The server imports lazily touch the DB only on the first request, so start it first and
    # bootstrap meanwhile: the two slow parts (each mostly Python imports) overlap.
    proc = _spawn_server(state, venv, port, env, paths["home"])
    try:
        if cached:
            result: dict[str, Any] = cached["result"]
        else:
            result = _bootstrap(venv, paths, env)
            _store_bootstrap(paths, key, password, result)
        wait_http("rucio server /ping", f"{url}/ping", timeout=_START_TIMEOUT, proc=proc, ok_status=lambda s: s == 200)
    except BaseException:
        down(state)
        raise
    section = _section(url, proc, paths, venv, idp, result, rses)
    section["root"] = {"account": "root", "username": ROOT_USERNAME, "password": password}
    section["fingerprint"] = fingerprint
    write_json(paths["section"], section)
    paths["section"].chmod(0o600)
    log.info("rucio server up at %s in %.1fs", url, time.monotonic() - started)
    return section


def down(state: Path) -> None:
    """Stop the server and its storage this state directory's ``up`` started (by PID); keep files."""
    stop_pidfile(_paths(state)["pidfile"])
    rucio_storage.down(state)
