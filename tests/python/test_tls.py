"""The Python client against an HTTPS service that requires client certificates (mTLS), with
a throwaway CA made here by `cryptography`."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import new_api_key, new_keyring
from pseudonym import Client, ConfigurationError, ServiceUnavailableError


def issue(name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
          usage: x509.ObjectIdentifier | None = None) -> tuple[x509.Certificate,
                                                              ec.EllipticCurvePrivateKey]:
    """A certificate for `name` signed by `issuer`, or a self-signed CA without one."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer[0].subject if issuer else subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1)))
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), False)
        if usage == ExtendedKeyUsageOID.SERVER_AUTH:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256()), key


def write_pem(path: Path, certificate: x509.Certificate,
              key: ec.EllipticCurvePrivateKey | None = None) -> Path:
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca = issue("test CA", None)
    clients = issue("client CA", None)
    write_pem(folder / "ca.pem", ca[0])
    write_pem(folder / "client-ca.pem", clients[0])
    write_pem(folder / "server.pem", *issue("localhost", ca, ExtendedKeyUsageOID.SERVER_AUTH))
    write_pem(folder / "job.pem", *issue("etl-job", clients, ExtendedKeyUsageOID.CLIENT_AUTH))
    return folder


def test_mtls_round_trip_with_files_or_environment(pki: Path, tmp_path: Path, start_daemon,
                                                   monkeypatch) -> None:
    keys_file = tmp_path / "api-keys.toml"
    admin = new_api_key(keys_file, "admin", "pseudonymize,reidentify", "*")
    daemon = start_daemon([
        "--keyring-file", str(new_keyring(tmp_path / "keyring.toml")),
        "--api-keys-file", str(keys_file),
        "--tls-cert-file", str(pki / "server.pem"), "--tls-key-file", str(pki / "server.key"),
        "--tls-client-ca-file", str(pki / "client-ca.pem"),
    ])
    assert daemon.url.startswith("https://")

    client = Client(daemon.url, admin, ca_file=pki / "ca.pem",
                    client_cert_file=pki / "job.pem", client_key_file=pki / "job.key")
    tokens = client.pseudonymize("vin", ["WVWZZZ1JZXW000001", None])
    assert client.reidentify("vin", tokens) == ["WVWZZZ1JZXW000001", None]

    monkeypatch.setenv("PSEUDONYM_CA_FILE", str(pki / "ca.pem"))
    monkeypatch.setenv("PSEUDONYM_CLIENT_CERT_FILE", str(pki / "job.pem"))
    monkeypatch.setenv("PSEUDONYM_CLIENT_KEY_FILE", str(pki / "job.key"))
    assert Client(daemon.url, admin).pseudonymize("vin", ["WVWZZZ1JZXW000001", None]) == tokens

    monkeypatch.delenv("PSEUDONYM_CLIENT_CERT_FILE")
    monkeypatch.delenv("PSEUDONYM_CLIENT_KEY_FILE")
    without_certificate = Client(daemon.url, admin, retries=0)
    with pytest.raises(ServiceUnavailableError):
        without_certificate.pseudonymize("vin", ["WVWZZZ1JZXW000001"])
    with pytest.raises(ConfigurationError, match="go together"):
        Client(daemon.url, admin, client_cert_file=pki / "job.pem")
    with pytest.raises(ConfigurationError, match="missing.pem"):
        Client(daemon.url, admin, ca_file=pki / "missing.pem")
