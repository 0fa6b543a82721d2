"""Minimal stand-in for a notebook server in benchmark pods: answers every HTTP request with 200.

Why: a storm of 200 real ``jupyterhub-singleuser`` processes (about 80 MB and a second of CPU each
to start) does not fit in the benchmark machine's 2 cores, and would measure Jupyter's start-up
instead of the hub and the control plane. The node agent runs this as the pod's command; it
listens where the hub expects the server (``$JUPYTERHUB_SERVICE_URL``, whose ``0.0.0.0`` the node
agent has rewritten to the pod IP). Standard library only: it runs on any python3.
"""

import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"benchmark responder\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET
    do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        """Silent: the pod log would otherwise grow with every readiness probe."""


def main() -> None:
    url = urlsplit(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8888/"))
    host, port = url.hostname or "127.0.0.1", url.port or 8888
    for arg in sys.argv[1:]:
        if arg.startswith("--ip="):
            host = arg.split("=", 1)[1] or host
        elif arg.startswith("--port="):
            port = int(arg.split("=", 1)[1])
    ThreadingHTTPServer((host, port), _Ok).serve_forever()


if __name__ == "__main__":
    main()
