"""The HTTPS certificate and key, checked before anything starts.

uvicorn loads them only when it starts listening, after the engines have loaded, and
reports a bad pair as an ``ssl.SSLError`` traceback. Here each way they can be wrong is
one line that says which file and what to do. A key that other users can read is
refused, not warned about: whoever reads it can impersonate the server.
"""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from dsdeploy.errors import ConfigError


def read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"the TLS {what} {path} does not exist; check --tls-{what}") from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read the TLS {what} {path} ({exc.strerror}); check its permissions"
        ) from None


def check_key_private(key: Path) -> None:
    mode = stat.S_IMODE(key.stat().st_mode)
    if mode & 0o007:  # group access stays allowed: Debian's ssl-cert group shares keys so
        raise ConfigError(
            f"the TLS key {key} can be read by other users (mode {mode:o}); run chmod 600 {key}"
        )


def public_key_der(pem_cert: bytes, pem_key: bytes, cert: Path, key: Path) -> tuple[bytes, bytes]:
    der = serialization.Encoding.DER
    info = serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        certificate = x509.load_pem_x509_certificate(pem_cert)
    except ValueError:
        raise ConfigError(f"{cert} is not a PEM certificate; check --tls-cert") from None
    try:
        private = serialization.load_pem_private_key(pem_key, password=None)
    except TypeError:
        raise ConfigError(
            f"the TLS key {key} is encrypted; give the server an unencrypted key "
            f"(openssl pkey -in {key} -out NEW.key) kept with mode 600"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(f"{key} is not a PEM private key; check --tls-key") from None
    return (
        certificate.public_key().public_bytes(der, info),
        private.public_key().public_bytes(der, info),
    )


def check_tls_files(cert: Path, key: Path) -> None:
    """Raise ``ConfigError`` unless uvicorn can serve HTTPS with this pair."""
    pem_cert, pem_key = read(cert, "cert"), read(key, "key")
    check_key_private(key)
    cert_public, key_public = public_key_der(pem_cert, pem_key, cert, key)
    if cert_public != key_public:
        raise ConfigError(f"the TLS key {key} does not belong to the certificate {cert}")
    try:  # what uvicorn will do: catches what the checks above cannot (an odd key type)
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise ConfigError(f"cannot serve TLS with {cert} and {key}: {exc.reason}") from None
