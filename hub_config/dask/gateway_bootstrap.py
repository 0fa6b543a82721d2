"""Bring hub_config's gateway modules into the dask-gateway chart's gateway pod, then configure it.

The dask-gateway chart 2026.3.0 gives its gateway pod no extra volumes: the one file it mounts is
its own generated ``dask_gateway_config.py`` (the ``gateway.extraConfig`` values appended). So the
umbrella chart pastes this file, verbatim, into ``gateway.extraConfig`` and follows it with one
generated call, ``bootstrap(c, <package JSON>, <gateway JSON>)``, whose arguments are data only: the
modules :mod:`hub_config.dask.gateway` imports (the chart's own ``files/hub_config``, path -> text)
and the limits table and namespace from ``datalake.dask_gateway`` (chart/templates/dask-gateway/).
The modules land in a private directory first on ``sys.path``, and the configuration is the same
:func:`~hub_config.dask.gateway.configure_gateway` call the local platform makes.

The gateway's own hub API token: that chart's ``jupyterhub`` auth type would inject it as the env var
``JUPYTERHUB_API_TOKEN`` (no token in env, by our standard), so the umbrella uses the ``custom`` type
with the same authenticator class and this file reads the token at start-up from its Secret through
the Kubernetes API, with the pod's ServiceAccount (allowed ``get`` on that one Secret by name:
chart/templates/dask-gateway/role.yaml). Bounded (timeout, size); errors name the Secret and key,
never the token, and stop the gateway with that one line (``SystemExit``: no traceback, and
dask-gateway-server cannot go on without its token).

Pasted into the middle of the gateway's configuration, so: standard library only, and no
``from __future__`` import (legal only at the top of a file).
"""

import base64
import binascii
import json
import os
import ssl
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = ["SERVICEACCOUNT_DIR", "SecretReadError", "bootstrap", "install_package", "read_secret_key"]

SERVICEACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
"""Where the kubelet mounts the pod's ServiceAccount token and the cluster CA (``token``, ``ca.crt``)."""
SECRET_READ_LIMIT = 256 * 1024
"""Most bytes read from the API for one Secret (or a ServiceAccount token file): a Secret's data is
at most 1 MiB, a token Secret a few hundred bytes; anything larger is refused, not buffered."""
SECRET_READ_TIMEOUT = 10.0
"""Seconds for the one API request: the gateway does not start without its token, so fail clearly."""


class SecretReadError(RuntimeError):
    """The gateway's token could not be read from its Secret (the message names the Secret, never the token)."""


def _read_bounded(path: Path, what: str) -> str:
    try:
        with path.open("rb") as f:
            data = f.read(SECRET_READ_LIMIT + 1)
    except OSError as e:
        raise SecretReadError(f"cannot read {what} {path}: {e.strerror or e}") from None
    if len(data) > SECRET_READ_LIMIT:
        raise SecretReadError(f"{what} {path} is larger than {SECRET_READ_LIMIT} bytes")
    return data.decode("utf-8", "replace").strip()


def read_secret_key(
    namespace: str,
    name: str,
    key: str,
    *,
    account_dir: Path = SERVICEACCOUNT_DIR,
    environ: Mapping[str, str] = os.environ,
    timeout: float = SECRET_READ_TIMEOUT,
) -> str:
    """``key`` of Secret ``namespace/name``, decoded, read in-cluster with the pod's ServiceAccount
    (``GET /api/v1/namespaces/<ns>/secrets/<name>`` on ``KUBERNETES_SERVICE_HOST:PORT``, verified
    with the mounted ``ca.crt``). Raises :class:`SecretReadError` with the reason.

    ``account_dir`` and ``environ`` are the in-cluster defaults; the local platform (which has no
    pod for the gateway) passes its own ServiceAccount files and apiserver address."""
    where = f"key {key!r} of Secret {namespace}/{name}"
    host = environ.get("KUBERNETES_SERVICE_HOST", "").strip()
    port = environ.get("KUBERNETES_SERVICE_PORT", "443").strip()
    if not host:
        raise SecretReadError(f"cannot read {where}: KUBERNETES_SERVICE_HOST is not set (not in a Kubernetes pod)")
    bearer = _read_bounded(account_dir / "token", "ServiceAccount token")
    if not bearer:
        raise SecretReadError(f"cannot read {where}: the ServiceAccount token {account_dir / 'token'} is empty")
    try:
        context = ssl.create_default_context(cafile=str(account_dir / "ca.crt"))
    except (OSError, ssl.SSLError) as e:
        raise SecretReadError(f"cannot read {where}: cluster CA {account_dir / 'ca.crt'}: {e}") from None
    netloc = f"[{host}]" if ":" in host else host
    path = f"/api/v1/namespaces/{urllib.parse.quote(namespace, safe='')}/secrets/{urllib.parse.quote(name, safe='')}"
    request = urllib.request.Request(
        f"https://{netloc}:{port}{path}",
        headers={"Authorization": f"Bearer {bearer}", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310 - https only
            body = response.read(SECRET_READ_LIMIT + 1)
    except urllib.error.HTTPError as e:
        hint = " (the gateway's ServiceAccount needs `get` on it)" if e.code in (401, 403) else ""
        raise SecretReadError(f"cannot read {where}: the API server answered {e.code} {e.reason}{hint}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise SecretReadError(f"cannot read {where} from https://{netloc}:{port}: {reason}") from None
    if len(body) > SECRET_READ_LIMIT:
        raise SecretReadError(f"cannot read {where}: the answer is larger than {SECRET_READ_LIMIT} bytes")
    try:
        data = json.loads(body).get("data") or {}
    except (ValueError, AttributeError):
        raise SecretReadError(f"cannot read {where}: the API server's answer is not a Secret object") from None
    if not isinstance(data, dict) or key not in data:
        keys = sorted(data) if isinstance(data, dict) else []
        raise SecretReadError(f"Secret {namespace}/{name} has no key {key!r} (its keys: {keys})")
    try:
        value = base64.b64decode(str(data[key]), validate=True).decode("utf-8").strip()
    except (binascii.Error, UnicodeDecodeError):
        raise SecretReadError(f"{where} is not base64-encoded UTF-8 text") from None
    if not value:
        raise SecretReadError(f"{where} is empty")
    return value


def install_package(files: dict[str, str]) -> Path:
    """Write ``files`` (path under ``hub_config/`` -> source) into a fresh private directory and put
    it first on ``sys.path``; the directory. A path leaving ``hub_config/`` is refused."""
    for rel in files:
        parts = PurePosixPath(rel).parts
        if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
            raise ValueError(f"hub_config file {rel!r} is not a relative path inside the package")
    root = Path(tempfile.mkdtemp(prefix="datalake-hub-gateway-"))
    for rel, text in sorted(files.items()):
        target = root.joinpath("hub_config", *PurePosixPath(rel).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    sys.path.insert(0, str(root))
    return root


def bootstrap(c: Any, package_json: str, gateway_json: str) -> None:
    """Read the gateway's hub API token from its Secret, install the shipped modules, write the
    limits table beside them, configure the gateway."""
    gateway = json.loads(gateway_json)
    token = gateway["token"]
    namespace = str(gateway["namespace"])
    try:
        api_token = read_secret_key(namespace, str(token["secret"]), str(token["key"]))
    except SecretReadError as err:
        raise SystemExit(f"dask-gateway: the gateway's hub API token: {err}") from None
    c.JupyterHubAuthenticator.jupyterhub_api_token = api_token
    root = install_package(json.loads(package_json))
    limits = root / "limits.json"
    limits.write_text(json.dumps(gateway["limits"]), encoding="utf-8")
    from hub_config.dask.gateway import configure_gateway

    configure_gateway(c, limits_file=limits, namespace=namespace, prefix=str(gateway.get("prefix", "/")))
