"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, controller-manager, scheduler.

Why real: the hub talks to Kubernetes through KubeSpawner, and its RBAC (what the chart
grants the hub ServiceAccount) must be enforced in tests, not assumed. No container engine
exists here, so the binaries are built from Go modules (:mod:`localplatform.gotools`) and run
as plain processes on 127.0.0.1 with ports picked at start.

Layout under ``<state>/controlplane/``: ``pki/`` (a CA made at start, serving and client
certificates, the service-account signing key), ``etcd/`` (data), kubeconfigs for the admin,
the controller-manager, the scheduler and the hub ServiceAccount, and ``section.json`` (what
``up`` returned, reused when everything is still running).

What runs in the controller-manager matters to the hub: ServiceAccounts and their tokens,
namespace deletion, garbage collection through ownerReferences (a Secret owned by a user's
pod goes with the pod), Deployments/ReplicaSets and Jobs. Nodes and pod status come from
kwok (:mod:`localplatform.kwok`); kube-scheduler places pods on them.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import json
import logging
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .base import PlatformError, Proc, free_port, spawn, stop_pidfile, wait_for, write_json
from .gotools import ensure_tool, kubernetes_version

__all__ = ["HUB_SERVICEACCOUNT", "NAME", "NAMESPACE", "down", "kubectl", "up"]

log = logging.getLogger("localplatform.controlplane")

NAME = "controlplane"
NAMESPACE = "datalake"
"""The hub's namespace (the chart's release namespace in the tests)."""
HUB_SERVICEACCOUNT = "hub"
SERVICE_CIDR = "10.96.0.0/16"
"""ClusterIPs are only allocated, never routed or bound here (no kube-proxy)."""
HUB_TOKEN_SECONDS = 365 * 24 * 3600
"""The hub kubeconfig's token outlives any test or dev session."""

MANIFESTS = Path(__file__).resolve().parent / "manifests"
PROCESSES = ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")
"""Stop order (reverse of start)."""


def _dir(state: Path) -> Path:
    return state / NAME


# --------------------------------------------------------------------------- certificates


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _cert(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server_names: tuple[str, ...] = (),
    server_ips: tuple[str, ...] = (),
    client: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650 if ca else 825))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server_names or server_ips else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        )
        builder = builder.add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True
        ).add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        if issuer:
            ski = issuer[0].extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
            )
    if server_names or server_ips:
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in server_ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _make_pki(pki: Path) -> None:
    """CA, apiserver serving cert, client certs for admin/controller-manager/scheduler, SA keys.

    The client identities are the ones Kubernetes' bootstrap RBAC already knows:
    ``system:masters`` for the admin, ``system:kube-controller-manager`` and
    ``system:kube-scheduler`` for the two components.
    """
    pki.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca = _cert(_name("datalake-hub local platform CA"), ca_key, None, ca=True)
    (pki / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write_key(pki / "ca.key", ca_key)
    service_ip = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))
    leaves: dict[str, dict[str, Any]] = {
        "apiserver": {
            "subject": _name("kube-apiserver"),
            "server_names": (
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            "server_ips": ("127.0.0.1", service_ip),
        },
        "admin": {"subject": _name("datalake-admin", "system:masters"), "client": True},
        "controller-manager": {"subject": _name("system:kube-controller-manager"), "client": True},
        "scheduler": {"subject": _name("system:kube-scheduler"), "client": True},
    }
    for name, spec in leaves.items():
        key = _key()
        subject = spec.pop("subject")
        cert = _cert(subject, key, (ca, ca_key), **spec)
        (pki / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(pki / f"{name}.key", key)
    sa_key = _key()
    _write_key(pki / "sa.key", sa_key)
    (pki / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


# --------------------------------------------------------------------------- kubeconfigs


def _kubeconfig(path: Path, server: str, ca: Path, user: dict[str, str], namespace: str = "default") -> None:
    """A one-cluster, one-user kubeconfig (JSON is valid YAML, so no YAML writer needed)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": "user", "user": user}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "user", "namespace": namespace}}],
        "current-context": "local",
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)


def _cert_user(pki: Path, name: str) -> dict[str, str]:
    return {"client-certificate": str(pki / f"{name}.crt"), "client-key": str(pki / f"{name}.key")}


def kubectl(kubeconfig: str | os.PathLike[str], *args: str, input_text: str | None = None, timeout: float = 60) -> str:
    """Run the platform's kubectl with ``kubeconfig``; return stdout, raise PlatformError on failure."""
    argv = [str(ensure_tool("kubectl")), "--kubeconfig", os.fspath(kubeconfig), *args]
    try:
        proc = subprocess.run(argv, input=input_text, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as err:
        raise PlatformError(f"kubectl {' '.join(args)} timed out") from err
    if proc.returncode != 0:
        raise PlatformError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


# --------------------------------------------------------------------------- health


def _ssl_context(pki: Path, verify: bool = True) -> ssl.SSLContext:
    """Admin client context; ``verify=False`` for the components' self-signed health endpoints."""
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return ctx


def _get(url: str, ctx: ssl.SSLContext) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=3, context=ctx) as resp:  # noqa: S310 - loopback
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read()


def _answers_ok(url: str, ctx: ssl.SSLContext) -> bool:
    return _get(url, ctx)[0] == 200


def _healthy(section: dict[str, Any], state: Path) -> bool:
    """Every process alive and the apiserver and both controllers answering healthy."""
    for name in PROCESSES:
        pidfile = state / "pids" / f"{name}.pid"
        try:
            pid = int(pidfile.read_text())
        except (OSError, ValueError):
            return False
        if not Proc(name, pid, pidfile, state / "logs" / f"{name}.log").alive():
            return False
    pki = Path(section["ca"]).parent
    try:
        if _get(f"{section['server']}/readyz", _ssl_context(pki))[0] != 200:
            return False
        unverified = _ssl_context(pki, verify=False)
        return all(
            _get(f"https://127.0.0.1:{section['ports'][c]}/healthz", unverified)[0] == 200
            for c in ("kube-controller-manager", "kube-scheduler")
        )
    except (OSError, KeyError, ssl.SSLError):
        return False


# --------------------------------------------------------------------------- up / down


def _running(state: Path) -> dict[str, Any] | None:
    """The section of a control plane that is up and healthy, so ``up`` can keep it."""
    saved = _dir(state) / "section.json"
    if not saved.exists():
        return None
    section: dict[str, Any] = json.loads(saved.read_text())
    if _healthy(section, state):
        log.info("control plane already running at %s", section["server"])
        return section
    log.info("control plane state found but not healthy; restarting from scratch")
    return None


def _start_etcd(etcd: Path, root: Path, ports: dict[str, int], state: Path) -> str:
    """One throwaway etcd member on loopback; returns its client URL once healthy."""
    etcd_url = f"http://127.0.0.1:{ports['etcd']}"
    peer_url = f"http://127.0.0.1:{ports['etcd-peer']}"
    etcd_proc = spawn(
        "etcd",
        [
            etcd,
            "--name=local",
            f"--data-dir={root / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=local={peer_url}",
            "--listen-metrics-urls=",
            "--unsafe-no-fsync=true",  # throwaway data; fsync only slows tests down
            "--log-level=warn",
        ],
        state,
    )
    wait_for("etcd", lambda: _get(f"{etcd_url}/health", ssl.create_default_context())[0] == 200, 30, proc=etcd_proc)
    return etcd_url


def _start_apiserver(binary: Path, etcd_url: str, root: Path, ports: dict[str, int], state: Path) -> None:
    """kube-apiserver with RBAC on (the hub's Role is really enforced), ready when ``/readyz`` is."""
    pki = root / "pki"
    apiserver = spawn(
        "kube-apiserver",
        [
            binary,
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={ports['kube-apiserver']}",
            f"--cert-dir={root / 'apiserver-certs'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            # Loopback addresses are rejected as endpoints; nothing in-cluster needs
            # the kubernetes Service's endpoints here.
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            "--profiling=false",
            "--enable-priority-and-fairness=false",
            "--v=1",
        ],
        state,
    )
    server = f"https://127.0.0.1:{ports['kube-apiserver']}"
    ctx = _ssl_context(pki)
    wait_for("kube-apiserver /readyz", lambda: _get(f"{server}/readyz", ctx)[0] == 200, 120, proc=apiserver)


def _start_controllers(
    binaries: dict[str, Path], kubeconfigs: dict[str, Path], root: Path, ports: dict[str, int], state: Path
) -> Proc:
    """controller-manager and scheduler, each with its own identity; returns the controller-manager."""
    pki = root / "pki"
    common = [
        "--bind-address=127.0.0.1",
        "--leader-elect=false",
        "--v=1",
    ]
    kcm = spawn(
        "kube-controller-manager",
        [
            binaries["kube-controller-manager"],
            *common,
            f"--kubeconfig={kubeconfigs['controller-manager']}",
            f"--authentication-kubeconfig={kubeconfigs['controller-manager']}",
            f"--authorization-kubeconfig={kubeconfigs['controller-manager']}",
            f"--secure-port={ports['kube-controller-manager']}",
            f"--cert-dir={root / 'controller-manager-certs'}",
            # One identity per controller, as in a real cluster (bootstrap RBAC expects it).
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--controllers=*",
        ],
        state,
    )
    scheduler = spawn(
        "kube-scheduler",
        [
            binaries["kube-scheduler"],
            *common,
            f"--kubeconfig={kubeconfigs['scheduler']}",
            f"--authentication-kubeconfig={kubeconfigs['scheduler']}",
            f"--authorization-kubeconfig={kubeconfigs['scheduler']}",
            f"--secure-port={ports['kube-scheduler']}",
            f"--cert-dir={root / 'scheduler-certs'}",
        ],
        state,
    )
    unverified = _ssl_context(pki, verify=False)
    for proc in (kcm, scheduler):
        url = f"https://127.0.0.1:{ports[proc.name]}/healthz"
        wait_for(f"{proc.name} /healthz", functools.partial(_answers_ok, url, unverified), 60, proc=proc)
    return kcm


def _bootstrap(kubeconfigs: dict[str, Path], server: str, pki: Path, kcm: Proc) -> None:
    """The datalake namespace, the hub's RBAC, and a kubeconfig holding the hub ServiceAccount's token."""
    admin = kubeconfigs["admin"]
    kubectl(admin, "apply", "-f", str(MANIFESTS / "namespace.yaml"))
    kubectl(admin, "apply", "-f", str(MANIFESTS / "hub-rbac.yaml"))
    # The service-account controller creating "default" proves the controller-manager works.
    wait_for(
        "controller-manager to create the default ServiceAccount",
        lambda: bool(kubectl(admin, "-n", NAMESPACE, "get", "serviceaccount", "default", "-o", "name")),
        60,
        proc=kcm,
    )
    token = kubectl(
        admin,
        "-n",
        NAMESPACE,
        "create",
        "token",
        HUB_SERVICEACCOUNT,
        f"--duration={HUB_TOKEN_SECONDS}s",
    ).strip()
    _kubeconfig(kubeconfigs["hub"], server, pki / "ca.crt", {"token": token}, namespace=NAMESPACE)


def _check_version(server: str, pki: Path, version: str) -> None:
    """``/version`` must say what we built: without the version ldflags it says v0.0.0 and helm's
    kubeVersion checks fail far from the cause."""
    status, body = _get(f"{server}/version", _ssl_context(pki))
    reported = json.loads(body).get("gitVersion") if status == 200 else None
    if reported != version:
        raise PlatformError(f"kube-apiserver reports {reported!r}, expected {version} (version ldflags?)")


def up(state: Path, info: dict[str, Any]) -> dict[str, Any]:
    """Start the control plane (or return the running one), with the datalake namespace and hub RBAC."""
    del info  # first component: depends on nothing
    running = _running(state)
    if running is not None:
        return running
    down(state)

    version = kubernetes_version()
    binaries = {name: ensure_tool(name) for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")}
    ensure_tool("kubectl")
    etcd = ensure_tool("etcd")

    root = _dir(state)
    shutil.rmtree(root, ignore_errors=True)
    pki = root / "pki"
    _make_pki(pki)
    ports = {
        name: free_port()
        for name in ("etcd", "etcd-peer", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
    }
    server = f"https://127.0.0.1:{ports['kube-apiserver']}"
    kubeconfigs = {name: root / f"{name}.kubeconfig" for name in ("admin", "controller-manager", "scheduler", "hub")}
    for name in ("admin", "controller-manager", "scheduler"):
        _kubeconfig(kubeconfigs[name], server, pki / "ca.crt", _cert_user(pki, name))

    etcd_url = _start_etcd(etcd, root, ports, state)
    _start_apiserver(binaries["kube-apiserver"], etcd_url, root, ports, state)
    kcm = _start_controllers(binaries, kubeconfigs, root, ports, state)
    _bootstrap(kubeconfigs, server, pki, kcm)
    _check_version(server, pki, version)

    section = {
        "server": server,
        "ca": str(pki / "ca.crt"),
        "kubeconfig": str(kubeconfigs["admin"]),
        "hub_kubeconfig": str(kubeconfigs["hub"]),
        "namespace": NAMESPACE,
        "hub_serviceaccount": HUB_SERVICEACCOUNT,
        "version": version,
        "bin_dir": str(binaries["kube-apiserver"].parent),
        "kubectl": str(ensure_tool("kubectl")),
        "etcd": etcd_url,
        "service_cidr": SERVICE_CIDR,
        "ports": ports,
    }
    write_json(root / "section.json", section)
    return section


def down(state: Path) -> None:
    """Stop the scheduler, controller-manager, apiserver and etcd this module started (by PID)."""
    for name in PROCESSES:
        stop_pidfile(state / "pids" / f"{name}.pid")
    (_dir(state) / "section.json").unlink(missing_ok=True)


def _main() -> None:
    """Bring the control plane up alone (debugging aid): ``python -m localplatform.controlplane``."""
    from .base import state_dir

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    started = time.monotonic()
    section = up(state_dir(), {})
    print(json.dumps(section, indent=2))
    print(f"up in {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    _main()
