"""Reach a platform running in its own network namespace from the host's browser (prototype).

Why: ``make dev`` inside :mod:`localplatform.netns` listens on the namespace's 127.0.0.1, which the
host's browser cannot reach. This forwarder listens on the host's 127.0.0.1 (loopback only) and
makes each outgoing connection from a worker thread that has joined the platform's network
namespace with ``os.setns`` (per thread, so listeners can still be opened in the host's namespace
at any time). A socket belongs to the namespace it was created in, whichever thread uses it later.

The same port numbers are forwarded: the IdP's issuer URL and the hub's public URL carry their ports,
and the browser must reach them as the hub and IdP name themselves.

``python -m localplatform.netns_forward --pid PID PORT [PORT ...]`` (as root; PID is any process in
the namespace, e.g. ``make dev``'s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import sys
from concurrent.futures import ThreadPoolExecutor

__all__ = ["Forwarder", "main"]

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


async def _serve(netns_path: str, ports: list[int]) -> None:
    forwarder = Forwarder(netns_path)
    for port in ports:
        await forwarder.listen(port)
        log.info("forwarding host %s:%d into %s", HOST, port, netns_path)
    await asyncio.gather(*(s.serve_forever() for s in forwarder.servers))


def main(argv: list[str] | None = None) -> int:
    """Forward the given ports until interrupted."""
    parser = argparse.ArgumentParser(prog="localplatform.netns_forward", description=__doc__)
    parser.add_argument("--pid", type=int, required=True, help="a process inside the platform's network namespace")
    parser.add_argument("ports", type=int, nargs="+")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        asyncio.run(_serve(f"/proc/{args.pid}/ns/net", args.ports))
    except KeyboardInterrupt:
        return 0
    except OSError as err:
        log.error("%s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
