"""HTTPS with a certificate made in the test: the gateway serves it, a client that trusts
only that certificate talks to it, and each way the pair can be wrong is one line."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from dsdeploy.errors import ConfigError
from dsdeploy.gateway.tls import check_tls_files
from dsdeploy.settings import SecuritySettings
from tests.conftest import run_cli
from tests.gateway_server import MODEL, running_gateway

PEM = serialization.Encoding.PEM


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def write_key(path: Path, key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> Path:
    encryption = (
        serialization.NoEncryption()
        if password is None
        else serialization.BestAvailableEncryption(password)
    )
    path.write_bytes(key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, encryption))
    path.chmod(0o600)
    return path


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1, and its key (mode 600)."""
    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert = folder / "server.crt"
    cert.write_bytes(certificate.public_bytes(PEM))
    return cert, write_key(folder / "server.key", key)


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed(tmp_path)


def test_the_gateway_serves_https_with_the_given_certificate(
    tmp_path: Path, pair: tuple[Path, Path]
) -> None:
    cert, key = pair
    trusting = ssl.create_default_context(cafile=str(cert))
    body = {"model": MODEL, "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}
    with running_gateway(tmp_path, SecuritySettings(tls_cert=cert, tls_key=key)) as port:
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=trusting) as client:
            health = client.get("/health")
            answer = client.post("/v1/chat/completions", json=body)
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"https://127.0.0.1:{port}/health")  # the system's CAs do not know it
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(f"http://127.0.0.1:{port}/health")  # plain HTTP gets no answer
    assert health.status_code == 200
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["message"]["content"]


def test_a_key_of_another_certificate_is_refused(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    cert, _ = pair
    other = write_key(tmp_path / "other.key", new_key())
    with pytest.raises(ConfigError, match="does not belong to the certificate"):
        check_tls_files(cert, other)


def test_a_key_other_users_can_read_is_refused(pair: tuple[Path, Path]) -> None:
    cert, key = pair
    key.chmod(0o644)
    with pytest.raises(ConfigError, match=r"can be read by other users \(mode 644\); run chmod"):
        check_tls_files(cert, key)
    key.chmod(0o640)  # a group such as Debian's ssl-cert may share it
    check_tls_files(cert, key)


def test_missing_encrypted_or_non_pem_files_are_named(
    tmp_path: Path, pair: tuple[Path, Path]
) -> None:
    cert, key = pair
    with pytest.raises(ConfigError, match="nowhere.crt does not exist; check --tls-cert"):
        check_tls_files(tmp_path / "nowhere.crt", key)
    with pytest.raises(ConfigError, match="server.key is not a PEM certificate"):
        check_tls_files(key, key)
    locked = write_key(tmp_path / "locked.key", new_key(), password=b"secret")
    with pytest.raises(ConfigError, match="is encrypted"):
        check_tls_files(cert, locked)
    not_a_key = tmp_path / "cert-as.key"
    not_a_key.write_bytes(cert.read_bytes())
    not_a_key.chmod(0o600)
    with pytest.raises(ConfigError, match="cert-as.key is not a PEM private key"):
        check_tls_files(cert, not_a_key)


def test_serve_with_a_bad_pair_stops_before_anything_starts(
    tmp_path: Path, pair: tuple[Path, Path]
) -> None:
    cert, _ = pair
    other = write_key(tmp_path / "other.key", new_key())
    result = run_cli(tmp_path, "serve", "--tls-cert", str(cert), "--tls-key", str(other))
    assert result.returncode == 1
    assert "does not belong to the certificate" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_certificate_without_its_key_is_a_settings_error(pair: tuple[Path, Path]) -> None:
    with pytest.raises(ValidationError, match="--tls-cert and --tls-key go together"):
        SecuritySettings(tls_cert=pair[0])
