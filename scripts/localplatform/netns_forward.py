"""Reach a platform running in its own network namespace from the host's browser (prototype).

Why: ``make dev`` inside :mod:`localplatform.netns` listens on the namespace's 127.0.0.1, which the
host's browser cannot reach. This forwarder listens on the host's 127.0.0.1 (loopback only) and
makes each outgoing connection from a worker thread that has joined the platform's network
namespace with ``os.setns`` (per thread, so listeners can still be opened in the host's namespace
at any time). A socket belongs to the namespace it was created in, whichever thread uses it later.

The same port numbers are forwarded: the IdP's issuer URL and the hub's public URL carry their ports,
and the browser must reach them as the hub and IdP name themselves.

``python -m localplatform.netns_forward --pid PID PORT [PORT ...]`` (as root; PID is any process in
the namespace, e.g. ``make dev``'s). With ``--state DIR`` it also follows that platform's
``platform.json`` and forwards the IdP's, Rucio's and Prometheus's ports as they appear: the browser
is sent to the IdP's login page by the hub. A port already taken on the host is reported, not forwarded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["Forwarder", "follow", "main"]

log = logging.getLogger("localplatform.netns_forward")

HOST = "127.0.0.1"


def _join(netns_path: str) -> None:
    fd = os.open(netns_path, os.O_RDONLY)
    try:
        os.setns(fd, os.CLONE_NEWNET)
    finally:
        os.close(fd)


class Forwarder:
    """Host 127.0.0.1:PORT → the namespace's 127.0.0.1:PORT, for each port given."""

    def __init__(self, netns_path: str) -> None:
        # One thread, in the platform's namespace for good: every outgoing socket is made there.
        self.inside = ThreadPoolExecutor(1, thread_name_prefix="netns", initializer=_join, initargs=(netns_path,))
        self.servers: list[asyncio.Server] = []

    async def listen(self, port: int) -> None:
        """Listen on the host's 127.0.0.1:``port`` (this thread never left the host's namespace)."""
        server = await asyncio.start_server(lambda r, w: self._handle(r, w, port), HOST, port)
        self.servers.append(server)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int) -> None:
        loop = asyncio.get_running_loop()
        sock = await loop.run_in_executor(self.inside, socket.socket, socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, (HOST, port))
            up_reader, up_writer = await asyncio.open_connection(sock=sock)
        except OSError as err:
            sock.close()
            log.warning("port %d: the namespace's side refused: %s", port, err)
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


def platform_ports(state: Path) -> set[int]:
    """Loopback ports a browser needs besides the hub's: every ``*url``/``issuer`` in platform.json."""
    try:
        info = json.loads((state / "platform.json").read_text())
    except (OSError, ValueError):
        return set()
    ports = set()
    for section in info.values():
        for key, value in section.items() if isinstance(section, dict) else ():
            if (key.endswith("url") or key == "issuer") and isinstance(value, str):
                parts = urlsplit(value)
                if parts.hostname == HOST and parts.port:
                    ports.add(parts.port)
    return ports


async def _serve(
    netns_path: str, ports: list[int], state: Path | None, alive: Callable[[], bool] | None = None
) -> None:
    """Forward ``ports`` (and ``state``'s) until the namespace's process is gone (or ``alive()`` says so)."""
    forwarder = Forwarder(netns_path)
    tried: set[int] = set()
    while True:
        wanted = set(ports) | (platform_ports(state) if state else set())
        for port in sorted(wanted - tried):
            tried.add(port)
            try:
                await forwarder.listen(port)
            except OSError as err:
                log.warning("host %s:%d not forwarded: %s", HOST, port, err)
                continue
            log.info("forwarding host %s:%d into %s", HOST, port, netns_path)
        if not (alive() if alive else os.path.exists(netns_path)):
            return  # the namespace's process is gone
        await asyncio.sleep(1)


def follow(pid: int, ports: list[int], state: Path) -> int:
    """Forward into child ``pid``'s namespace (once it has its own) until it exits; its exit status."""
    own = os.stat("/proc/self/ns/net").st_ino
    status: list[int] = []

    def alive() -> bool:
        if not status:
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(code)
                status.append(code if code >= 0 else 128 - code)  # killed by signal N: 128+N, as a shell says
        return not status

    while alive():
        with contextlib.suppress(OSError):
            if os.stat(f"/proc/{pid}/ns/net").st_ino != own:
                asyncio.run(_serve(f"/proc/{pid}/ns/net", ports, state, alive))
                break
        time.sleep(0.1)
    while alive():
        time.sleep(0.2)
    return status[0]


def main(argv: list[str] | None = None) -> int:
    """Forward the given ports until interrupted."""
    parser = argparse.ArgumentParser(prog="localplatform.netns_forward", description=__doc__)
    parser.add_argument("--pid", type=int, required=True, help="a process inside the platform's network namespace")
    parser.add_argument("--state", type=Path, help="follow this platform state dir's platform.json")
    parser.add_argument("ports", type=int, nargs="*")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        asyncio.run(_serve(f"/proc/{args.pid}/ns/net", args.ports, args.state))
    except KeyboardInterrupt:
        return 0
    except OSError as err:
        log.error("%s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
