"""Helpers for the signature tests: throwaway keys and certificates, a packaged adapter, the OMS verifiers.

Keys are generated with ``cryptography`` per test (ECDSA P-256: what the OMS key method supports); no
torch is needed, so these tests stay fast. ``oms_api_verify`` and ``oms_cli_verify`` are the
``model_signing`` package's own verifier (Python API and console command), i.e. "any OMS verifier".
"""

from __future__ import annotations

import dataclasses
import datetime
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner, Result

from adapterhub.cli import cli
from adapterhub.manifest import MANIFEST_FILENAME, SIGNATURE_FILENAME, write_manifest
from support.store_support import manifest_for, safetensors_bytes

FILES = {"adapter.safetensors": safetensors_bytes(64), "head.safetensors": safetensors_bytes(8, name="h", seed=3),
         "extra/labels.json": b'{"0": "negative", "1": "positive"}\n'}


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path


def make_key(directory: Path, name: str = "key", curve: str = "p256", password: bytes | None = None) -> KeyPair:
    """A fresh key pair in PEM files ``name.pem`` / ``name.pub`` (``curve``: p256, p384 or ed25519)."""
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    directory.mkdir(parents=True, exist_ok=True)
    key = ed25519.Ed25519PrivateKey.generate() if curve == "ed25519" else \
        ec.generate_private_key(ec.SECP384R1() if curve == "p384" else ec.SECP256R1())
    encryption = ser.BestAvailableEncryption(password) if password else ser.NoEncryption()
    pair = KeyPair(directory / f"{name}.pem", directory / f"{name}.pub")
    pair.private.write_bytes(key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, encryption))
    pair.public.write_bytes(key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo))
    return pair


@dataclass(frozen=True)
class CertSet:
    ca: Path
    """The root CA certificate (what verifiers trust)."""
    key: Path
    cert: Path
    """The leaf signing certificate of ``key``, issued by the CA."""


def make_certificates(directory: Path, name: str = "ca") -> CertSet:
    """A self-signed CA and a code-signing leaf certificate it issued (P-256 keys)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} root")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now)
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "publisher")]))
            .issuer_name(ca_name).public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    out = CertSet(directory / f"{name}.crt", directory / f"{name}-leaf.pem", directory / f"{name}-leaf.crt")
    out.ca.write_bytes(ca.public_bytes(ser.Encoding.PEM))
    out.key.write_bytes(leaf_key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()))
    out.cert.write_bytes(leaf.public_bytes(ser.Encoding.PEM))
    return out


def make_package(directory: Path, *, name: str = "toy-adapter", version: str = "1.0.0",
                 files: dict[str, bytes] | None = None) -> Path:
    """A packaged adapterhub directory (manifest + files, no sources): what ``adapterhub package`` leaves."""
    files = FILES if files is None else files
    for rel, body in files.items():
        (directory / rel).parent.mkdir(parents=True, exist_ok=True)
        (directory / rel).write_bytes(body)
    write_manifest(dataclasses.replace(manifest_for(files, name=name, version=version), sources=None),
                   directory / MANIFEST_FILENAME)
    return directory


def run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


def ok(*args: object) -> Result:
    result = run(*args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def oms_api_verify(directory: Path, public_key: Path | None = None, certificate_chain: Path | None = None) -> None:
    """``model_signing``'s Python API, as its docs show it (raises on failure)."""
    import model_signing

    config = model_signing.verifying.Config()
    if public_key is not None:
        config.use_elliptic_key_verifier(public_key=public_key)
    else:
        config.use_certificate_verifier(certificate_chain=[certificate_chain])
    config.verify(directory, directory / SIGNATURE_FILENAME)


def oms_cli_verify(directory: Path, *method_args: object) -> subprocess.CompletedProcess:
    """``model_signing verify <method> DIR --signature DIR/model.sig ...`` (the console command)."""
    return subprocess.run([sys.executable, "-m", "model_signing", "verify", *map(str, method_args[:1]), str(directory),
                           "--signature", str(directory / SIGNATURE_FILENAME), *map(str, method_args[1:])],
                          capture_output=True, text=True, timeout=120)
