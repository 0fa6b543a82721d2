"""One RSE's storage endpoint: an HTTPS WebDAV server (WsgiDAV under cheroot); runs in its own venv.

``localplatform.rucio_storage`` starts ``<webdav venv>/bin/python webdav_server.py CONFIG_JSON``.
CONFIG: ``host``, ``port``, ``cert``, ``key`` (PEM files; the platform's CA signed the certificate),
``share`` (the URL path the RSE's prefix starts with, e.g. ``/eos/lake``), ``root`` (the directory
served there; for the EOS RSE the same directory the node agent mounts at ``/eos/lake``).

Why a WebDAV server: Rucio's ``rucio.rse.protocols.webdav`` (plain ``requests``) is what both the
notebook's ``rucio upload``/``download`` and the server side speak, so replicas are reached over the
network as on a real lake, never through a host path a pod cannot see.

A ``HEAD`` response carries no body (:func:`_no_body_on_head`), as HTTP requires and cheroot does
not enforce. One liberty, as EOS and dCache take it: a ``PUT`` creates missing parent collections (WsgiDAV
answers 409 there, and Rucio's client reads a 409 as "file already exists").
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter
from wsgidav.wsgidav_app import WsgiDAVApp

log = logging.getLogger("webdav")

App = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _parents_on_put(app: App, share: str, root: Path) -> App:
    """Create the directories above a ``PUT`` target inside ``root`` (never outside it)."""
    prefix = share.rstrip("/") + "/"
    real_root = os.path.realpath(root)

    def middleware(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = unquote(environ.get("PATH_INFO", ""))
        if environ.get("REQUEST_METHOD") == "PUT" and path.startswith(prefix):
            parent = os.path.realpath(os.path.join(real_root, os.path.dirname(path[len(prefix) :])))
            if parent == real_root or parent.startswith(real_root + os.sep):
                os.makedirs(parent, mode=0o755, exist_ok=True)
        return app(environ, start_response)

    return middleware


def _no_body_on_head(app: App) -> App:
    """Send no body after a ``HEAD`` response's headers, whatever the app produced.

    WsgiDAV answers a ``HEAD`` on a missing file with its HTML error page, and cheroot writes that
    body out. A client (``requests``, as Rucio's ``exists()`` before every upload) reads no body
    after ``HEAD``, so the page stays on the kept-alive connection and the next request on it reads
    ``<!DOCTYPE HTML ...`` as its status line: http.client's ``BadStatusLine``, seen on uploads
    whenever the page arrived after urllib3's check that the idle connection was still clean.
    """

    def middleware(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        result = app(environ, start_response)
        if environ.get("REQUEST_METHOD") != "HEAD":
            return result
        try:
            for _ in result:  # the app runs to its end (and calls start_response) as for any request
                pass
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return []

    return middleware


def build(config: dict[str, Any]) -> wsgi.Server:
    """The configured server (not started)."""
    root = Path(config["root"])
    root.mkdir(parents=True, exist_ok=True)
    share = "/" + str(config["share"]).strip("/")
    dav = WsgiDAVApp(
        {
            "host": config["host"],
            "port": int(config["port"]),
            "provider_mapping": {share: {"root": str(root), "readonly": False}},
            "simple_dc": {"user_mapping": {"*": True}},
            "http_authenticator": {"accept_basic": True, "accept_digest": False, "default_to_digest": False},
            "dir_browser": {"enable": True},
            "lock_storage": True,
            "property_manager": True,
            "verbose": 2,
            "logging": {"enable": True},
        }
    )
    server = wsgi.Server((config["host"], int(config["port"])), _no_body_on_head(_parents_on_put(dav, share, root)))
    server.ssl_adapter = BuiltinSSLAdapter(config["cert"], config["key"])
    return server


def main(argv: list[str]) -> int:
    """Entry point: ``webdav_server.py CONFIG_JSON``; serves until SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = json.loads(Path(argv[1]).read_text())
    os.umask(0o022)  # files readable by every pod user through the EOS mount
    server = build(config)
    log.info("serving %s at https://%s:%s%s", config["root"], config["host"], config["port"], config["share"])
    try:
        server.start()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
