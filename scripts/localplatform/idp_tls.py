"""The IdP's TLS material (helper of :mod:`localplatform.idp`): its own CA, a server certificate, a bundle.

Why HTTPS with a private CA: ESCAPE IAM is HTTPS, and the hub, Rucio and the notebooks must be
configured to trust an IdP CA exactly as an operator configures them (``ca_bundle`` settings,
``REQUESTS_CA_BUNDLE``); a plain-HTTP IdP would let that wiring go untested.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

__all__ = ["ca_bundle", "ensure_tls"]


def _write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def ensure_tls(d: Path, host: str) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for ``host`` (an IP) and localhost, created once per state dir.

    Kept across stop/start so clients that trusted the IdP before an outage still do.
    """
    ca_pem, cert_pem, key_pem = d / "ca.pem", d / "server.pem", d / "server.key"
    if ca_pem.exists() and cert_pem.exists() and key_pem.exists():
        return ca_pem, cert_pem, key_pem
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "datalake-hub local IdP CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=364))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.IPAddress(ipaddress.ip_address(host)),
                    x509.DNSName("localhost"),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    no_enc = serialization.NoEncryption()
    pkcs8 = serialization.PrivateFormat.PKCS8
    _write_private(d / "ca.key", ca_key.private_bytes(pem, pkcs8, no_enc))
    _write_private(key_pem, key.private_bytes(pem, pkcs8, no_enc))
    cert_pem.write_bytes(cert.public_bytes(pem))
    ca_pem.write_bytes(ca.public_bytes(pem))
    return ca_pem, cert_pem, key_pem


def ca_bundle(d: Path, ca: Path) -> Path:
    """certifi's bundle (and the machine's, if the environment names one) plus our CA.

    One file for ``REQUESTS_CA_BUNDLE`` that trusts the IdP and still everything else a
    process trusted before (a site's proxy CA lives in the machine's bundle, not certifi's).
    """
    import certifi

    parts = [Path(certifi.where())]
    for var in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        extra = os.environ.get(var)
        if extra and Path(extra).is_file() and Path(extra).resolve() not in {p.resolve() for p in parts}:
            parts.append(Path(extra))
    bundle = d / "ca-bundle.pem"
    bundle.write_text("\n".join(p.read_text() for p in [*parts, ca]))
    return bundle
