"""A lab's own certificate authority: a broker beyond loopback speaks TLS with nothing to set up.

Passwords and masks must not cross a lab network in clear, and a lab has no public name to get a
certificate for. So the broker directory keeps a small CA of its own (``tls/ca.pem``, its key
``tls/ca.key``) and a server certificate it signs for the listener's addresses; devices pin
``ca.pem`` (``join --cafile``), and their TLS clients check the broker's address against the
certificate's SubjectAlternativeName as usual. The CA is made once and kept (a restarted broker must
not invalidate what devices pinned); the server certificate is re-issued whenever the listener's
addresses are not all in it, or it is about to expire.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ...atomic import atomic_write
from ...errors import UserError

CA_VALIDITY = timedelta(days=3650)
SERVER_VALIDITY = timedelta(days=825)  # the longest TLS clients (Apple's) accept for a server certificate
RENEW_BEFORE = timedelta(days=30)
# A Raspberry Pi has no clock battery: until NTP answers, its clock may lag; certificates start a week early.
BACKDATE = timedelta(days=7)


@dataclass(frozen=True)
class LabTls:
    """The lab CA's certificate (what clients pin) and the server certificate and key mosquitto uses."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def ensure_lab_ca(directory: str | Path, hosts: Iterable[str]) -> LabTls:
    """The lab CA in ``directory`` (made when absent) and a server certificate valid for every one of ``hosts``.

    Keys are written with mode 0600. An existing server certificate is kept when it is this CA's,
    names all ``hosts`` and is not about to expire; otherwise a new one (and key) replaces it.
    """
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    names = _general_names(hosts)
    tls = LabTls(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    ca_cert, ca_key = _lab_ca(tls.ca_file, directory / "ca.key")
    if not _server_cert_fits(tls, ca_cert, names):
        _issue_server_cert(tls, ca_cert, ca_key, names)
    return tls


def _general_names(hosts: Iterable[str]) -> list[x509.GeneralName]:
    """IP addresses as IPAddress entries (what TLS clients match an IP against), names as DNSName."""
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    if not names:
        raise UserError("a lab TLS certificate needs at least one host name or address")
    return names


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())  # fast to make and to handshake with on a Pi


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    atomic_write(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()), mode=0o600)


def _lab_ca(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA kept in the broker directory, or a new one when neither of its files exists."""
    if not cert_path.exists() and not key_path.exists():
        return _make_ca(cert_path, key_path)
    redo = f"delete {cert_path} and {key_path} to make a new lab CA (devices must then pin the new ca.pem)"
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise UserError(f"lab CA in {cert_path.parent}: cannot load it ({exc}); {redo}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise UserError(f"{key_path}: not the key of {cert_path}; {redo}")
    if cert.not_valid_after_utc <= _now():
        raise UserError(f"{cert_path}: the lab CA expired on {cert.not_valid_after_utc:%Y-%m-%d}; {redo}")
    return cert, key


def _make_ca(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    # A random suffix: two labs' CAs never share a name, so a client's error names the right one.
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edge-mcepl"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"edge-mcepl lab CA {secrets.token_hex(4)}")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - BACKDATE).not_valid_after(_now() + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .sign(key, hashes.SHA256()))
    _write_key(key_path, key)  # the key first: a CA certificate on disk always has its key
    atomic_write(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return cert, key


def _server_cert_fits(tls: LabTls, ca_cert: x509.Certificate, names: list[x509.GeneralName]) -> bool:
    """The existing server certificate is this CA's, with its key, naming every host, not about to expire."""
    try:
        cert = x509.load_pem_x509_certificate(tls.cert_file.read_bytes())
        key = serialization.load_pem_private_key(tls.key_file.read_bytes(), password=None)
        cert.verify_directly_issued_by(ca_cert)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False  # missing, unreadable or another CA's: a new one is cheap
    return (key.public_key() == cert.public_key() and all(name in san for name in names)
            and cert.not_valid_after_utc - _now() > RENEW_BEFORE)


def _issue_server_cert(tls: LabTls, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
                       names: list[x509.GeneralName]) -> None:
    key = _new_key()
    common_name = str(names[0].value)[:64]  # informational only: clients match the SubjectAlternativeName
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(_now() - BACKDATE).not_valid_after(_now() + SERVER_VALIDITY)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write_key(tls.key_file, key)
    atomic_write(tls.cert_file, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
