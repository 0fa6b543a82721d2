"""Install everything the tests need, before they run: `make test` calls this first.

Go builds (CPU-bound) run in one thread while downloads and venvs (network-bound) run in another,
so a fresh machine spends its 90 CI minutes once, not twice. On a warm machine every step finds its
cache and returns at once. Failures are reported per step, with the step's name.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from .browser import ensure_chromium
from .codeserver import ensure_code_server
from .daskgateway import ensure_gateway_venv
from .gotools import ensure_tool
from .idp import install_node_modules
from .imagepkgs import ensure_image_packages
from .prometheus import ensure_prometheus
from .rucio_server import ensure_server_venv
from .rucio_storage import ensure_webdav_venv
from .sessionenv import ensure_session_venv

log = logging.getLogger("localplatform.prepare")

GO_TOOLS = ("kube-apiserver", "etcd", "kwok", "helm", "traefik")


def _timed(name: str, step: Callable[[], object]) -> tuple[str, float, BaseException | None]:
    started = time.monotonic()
    try:
        step()
    except Exception as err:  # noqa: BLE001 - reported below with the step's name
        return name, time.monotonic() - started, err
    return name, time.monotonic() - started, None


def _go() -> list[tuple[str, float, BaseException | None]]:
    return [_timed(f"go build {tool}", lambda tool=tool: ensure_tool(tool)) for tool in GO_TOOLS]


def _downloads() -> list[tuple[str, float, BaseException | None]]:
    steps: list[tuple[str, Callable[[], object]]] = [
        ("npm ci (IdP, proxy)", install_node_modules),
        ("session venv", ensure_session_venv),
        ("Rucio server venv", ensure_server_venv),
        ("WebDAV storage venv (the lake's RSEs)", ensure_webdav_venv),
        ("dask-gateway-server venv", ensure_gateway_venv),
        ("Chromium (apt, for tests/e2e)", ensure_chromium),
        ("R + IRkernel (apt, the datascience image's apt layer)", ensure_image_packages),
        ("Prometheus + promtool (apt download, for the metrics tests)", ensure_prometheus),
        ("code-server (npm, Node 24 from PyPI)", ensure_code_server),
    ]
    return [_timed(name, step) for name, step in steps]


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with ThreadPoolExecutor(max_workers=2) as pool:
        go = pool.submit(_go)
        downloads = pool.submit(_downloads)
        results = [*go.result(), *downloads.result()]
    failed = False
    for name, seconds, err in results:
        status = "ok" if err is None else f"FAILED: {err}"
        print(f"prepare: {name}: {seconds:.1f}s {status}", flush=True)
        failed = failed or err is not None
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
