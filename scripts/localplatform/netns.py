"""A network namespace of our own for the platform, so pods get real (non-loopback) IPs.

Why: kube-apiserver refuses loopback addresses in Endpoints and EndpointSlices, so with pods on
127.x no Service ever has endpoints (Dask Gateway waits for its scheduler Service's endpoints
before a cluster is RUNNING). Inside a network namespace created here, a private range routed
locally on ``lo`` (``ip route add local 10.0.0.0/8 dev lo``) binds on any address without
per-IP setup, like 127.0.0.0/8 does, and the apiserver accepts it. Nothing is added to the host's
own namespace: the namespace lives as long as the command run in it.

``python -m localplatform.netns -- CMD ...`` (as root) runs CMD in a new network namespace with
``lo`` up, the pod range local, and ``$DATALAKE_POD_NETWORK`` naming the range. The platform uses
that range for pods (see :func:`pod_network`) only when it really is inside such a namespace;
elsewhere it keeps its loopback pod ranges.

The registries (PyPI, npm, Debian, Go proxy) are unreachable inside: run ``make prepare`` first.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import subprocess
import sys

from .base import PlatformError

__all__ = ["POD_NETWORK", "POD_NETWORK_ENV", "in_private_netns", "main", "pod_network"]

POD_NETWORK = "10.0.0.0/8"
"""The range routed locally inside the namespace; each platform (state dir) takes a /16 of it."""
POD_NETWORK_ENV = "DATALAKE_POD_NETWORK"
HOST_NETNS_ENV = "DATALAKE_HOST_NETNS"
"""The inode of the network namespace :func:`main` left (``/proc/1/ns/net`` may be unreadable)."""


def _netns_inode(pid: str = "self") -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def in_private_netns() -> bool:
    """True when this process's network namespace is neither init's nor the one :func:`main` left."""
    here = _netns_inode()
    if here is None:
        return False
    host = {_netns_inode("1"), int(os.environ.get(HOST_NETNS_ENV) or 0) or None} - {None}
    return bool(host) and here not in host


def _binds(address: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, 0))
        except OSError:
            return False
    return True


def pod_network() -> str | None:
    """The pod range to use instead of loopback, or None (not asked for: keep loopback).

    Asked for by ``$DATALAKE_POD_NETWORK``; refused with a clear error unless this process is in a
    private network namespace where the range binds locally: a private range must never be used
    in the host's own namespace.
    """
    value = os.environ.get(POD_NETWORK_ENV, "").strip()
    if not value:
        return None
    try:
        net = ipaddress.ip_network(value)
    except ValueError as err:
        raise PlatformError(f"${POD_NETWORK_ENV}={value!r} is not a network: {err}") from None
    if net.version != 4 or net.prefixlen > 16 or net.is_loopback:
        raise PlatformError(f"${POD_NETWORK_ENV}={value}: need an IPv4 non-loopback range of /16 or more")
    if not in_private_netns():
        raise PlatformError(
            f"${POD_NETWORK_ENV}={value} but this is the host's network namespace; "
            "run under `python -m localplatform.netns -- ...`"
        )
    probe = str(net.network_address + 1)
    if not _binds(probe):
        raise PlatformError(f"${POD_NETWORK_ENV}={value}: {probe} does not bind (is the range routed local on lo?)")
    return str(net)


def _setup(network: str) -> None:
    for argv in (["ip", "link", "set", "lo", "up"], ["ip", "route", "add", "local", network, "dev", "lo"]):
        subprocess.run(argv, check=True)


def _forward_from_host(child: int, port: int) -> int:
    """Stay in the host's namespace: forward ``port`` and the platform's URLs into the child's."""
    from .base import state_dir
    from .netns_forward import follow

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the child too; it stops the platform
    signal.signal(signal.SIGTERM, lambda *_: os.kill(child, signal.SIGTERM))
    return follow(child, [port], state_dir())


def main(argv: list[str] | None = None) -> int:
    """Unshare the network namespace, set it up, exec the command (``--forward PORT``: and, from a
    process left in the host's namespace, forward host 127.0.0.1:PORT and the platform's URLs into it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        sys.stderr.write("usage: python -m localplatform.netns [--forward PORT] -- CMD [ARGS...]\n")
        return 2
    forward = None
    if args[:1] == ["--forward"]:
        forward, args = int(args[1]), args[2:]
        args = args[1:] if args[:1] == ["--"] else args
    network = os.environ.get(POD_NETWORK_ENV) or POD_NETWORK
    host = _netns_inode()
    if forward is not None:
        child = os.fork()
        if child:
            return _forward_from_host(child, forward)
    try:
        os.unshare(os.CLONE_NEWNET)
    except PermissionError:
        sys.stderr.write("localplatform.netns: unsharing the network namespace needs root\n")
        return 1
    _setup(network)
    os.environ[POD_NETWORK_ENV] = network
    os.environ[HOST_NETNS_ENV] = str(host or "")
    try:
        os.execvp(args[0], args)  # noqa: S606 - the caller's command, by design
    except OSError as err:
        sys.stderr.write(f"localplatform.netns: cannot run {args[0]}: {err}\n")
    return 127


if __name__ == "__main__":
    sys.exit(main())
