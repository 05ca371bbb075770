"""OMS signatures made by ``adapterhub package --sign`` / ``sign``, checked by us and by ``model_signing`` itself.

"Any OMS verifier must accept our signatures": the package's own verifier (its Python API and its
``model_signing verify`` command) must accept what we sign, on the packaged directory and on the
directory a pull leaves in the cache, and must refuse — like our ``verify-signature`` — a flipped
byte in any file, an added file, and a signature by another key or CA.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.signing_support import (
    FILES,
    make_certificates,
    make_key,
    make_package,
    ok,
    oms_api_verify,
    oms_cli_verify,
    run,
)

from adapterhub.errors import OptionalDependencyError, PublishError, SignatureError
from adapterhub.manifest import MANIFEST_FILENAME, SIGNATURE_FILENAME, load_manifest
from adapterhub.publish.sign import SigningKey, sign_package
from adapterhub.store import pull
from adapterhub.store.signatures import signed_resources, verify_directory
from adapterhub.store.trust import Trust, signers_from_files


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path / "cache"))
    for var in ("ADAPTERHUB_OFFLINE", "HF_HUB_OFFLINE", "ADAPTERHUB_INDEX", "ADAPTERHUB_TRUST_KEYS",
                "ADAPTERHUB_TRUST_CERT_CHAINS", "ADAPTERHUB_TRUST_INDEX_SIGNERS", "ADAPTERHUB_SIGNING_KEY_PASSWORD"):
        monkeypatch.delenv(var, raising=False)


def _pulled_view(tmp_path: Path, package: Path, public_key: Path) -> Path:
    ok("publish", package, "--to", tmp_path / "registry")
    out = ok("pull", "toy-adapter", "--index", tmp_path / "registry", "--trust-key", public_key, "-q").output
    return Path(out.strip())


def test_package_sign_covers_exactly_the_files_and_the_manifest(tmp_path: Path) -> None:
    key = make_key(tmp_path / "keys")
    d = make_package(tmp_path / "pkg")
    (d / ".DS_Store").write_bytes(b"junk")  # dot-files are never published, so never signed
    out = ok("package", d, "--no-card", "--sign", "--key", key.private).output
    assert "signed 4 file(s)" in out
    resources = signed_resources((d / SIGNATURE_FILENAME).read_bytes(), "model.sig")
    assert sorted(resources) == sorted([*FILES, MANIFEST_FILENAME])
    manifest = load_manifest(d)
    assert all(resources[f.path] == f.sha256 for f in manifest.files)
    bundle = json.loads((d / SIGNATURE_FILENAME).read_text())
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert not list(d.glob(".adapterhub-sign-*"))  # the staging directory is gone
    with pytest.raises(ValueError, match="Extra files"):  # OMS verifiers hash whatever the directory holds
        oms_api_verify(d, public_key=key.public)
    (d / ".DS_Store").unlink()
    oms_api_verify(d, public_key=key.public)  # the packaged directory itself verifies


def test_every_oms_verifier_accepts_the_pulled_directory(tmp_path: Path) -> None:
    key = make_key(tmp_path / "keys")
    d = make_package(tmp_path / "pkg")
    ok("package", d, "--no-card", "--sign", "--key", key.private)
    view = _pulled_view(tmp_path, d, key.public)
    assert (view / MANIFEST_FILENAME).read_bytes() == (d / MANIFEST_FILENAME).read_bytes()
    assert (view / SIGNATURE_FILENAME).read_bytes() == (d / SIGNATURE_FILENAME).read_bytes()
    oms_api_verify(view, public_key=key.public)
    cli = oms_cli_verify(view, "key", "--public_key", key.public)
    assert cli.returncode == 0 and "Verification succeeded" in cli.stdout, cli.stdout + cli.stderr
    assert "signed by" in ok("verify-signature", view, "--trust-key", key.public).output


def _flip_byte(path: Path) -> None:
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.unlink()  # a view's file is a hard link to a blob: break the link, leave the cache's blob alone
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("change", ["weights byte", "nested file byte", "manifest byte", "added file",
                                    "another key"])
def test_tampering_is_refused_by_us_and_by_model_signing(tmp_path: Path, change: str) -> None:
    key, other = make_key(tmp_path / "keys"), make_key(tmp_path / "keys", "other")
    d = make_package(tmp_path / "pkg")
    ok("package", d, "--no-card", "--sign", "--key", key.private)
    victim = tmp_path / "victim"
    shutil.copytree(_pulled_view(tmp_path, d, key.public), victim)
    trusted = key.public
    if change == "weights byte":
        _flip_byte(victim / "adapter.safetensors")
    elif change == "nested file byte":
        _flip_byte(victim / "extra" / "labels.json")
    elif change == "manifest byte":
        text = (victim / MANIFEST_FILENAME).read_text()
        (victim / MANIFEST_FILENAME).write_text(text.replace('"alpha": 8', '"alpha": 9'))
    elif change == "added file":
        (victim / "extra" / "payload.py").write_text("print('hi')\n")
    else:
        trusted = other.public
    with pytest.raises(SignatureError):
        verify_directory(victim, load_manifest(victim), signers_from_files([trusted]))
    assert run("verify-signature", victim, "--trust-key", trusted).exit_code == 1
    with pytest.raises(Exception):  # noqa: B017 - model_signing raises ValueError / InvalidSignature
        oms_api_verify(victim, public_key=trusted)
    cli = oms_cli_verify(victim, "key", "--public_key", trusted)
    assert cli.returncode != 0 and "Verification failed" in cli.stderr, cli.stdout + cli.stderr


def test_certificate_method_signs_offline_and_every_verifier_accepts_it(tmp_path: Path) -> None:
    certs, stranger = make_certificates(tmp_path / "pki"), make_certificates(tmp_path / "pki", "stranger")
    d = make_package(tmp_path / "pkg")
    ok("sign", d, "--key", certs.key, "--cert", certs.cert, "--cert-chain", certs.ca)
    oms_api_verify(d, certificate_chain=certs.ca)
    cli = oms_cli_verify(d, "certificate", "--certificate_chain", certs.ca)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    ok("publish", d, "--to", tmp_path / "registry")
    view = Path(ok("pull", "toy-adapter", "--index", tmp_path / "registry", "--trust-cert-chain", certs.ca,
                   "-q").output.strip())
    assert "signed by" in ok("verify-signature", view, "--trust-cert-chain", certs.ca).output
    refused = run("verify-signature", view, "--trust-cert-chain", stranger.ca)
    assert isinstance(refused.exception, SignatureError) and "does not chain" in str(refused.exception)
    assert oms_cli_verify(view, "certificate", "--certificate_chain", stranger.ca).returncode != 0


def test_any_one_of_several_trusted_keys_suffices(tmp_path: Path) -> None:
    key, other = make_key(tmp_path / "keys"), make_key(tmp_path / "keys", "other")
    d = make_package(tmp_path / "pkg")
    sign_package(d, SigningKey(key.private))
    signer = verify_directory(d, load_manifest(d), signers_from_files([other.public, key.public]))
    assert signer.label == str(key.public)
    with pytest.raises(SignatureError, match="not made by a trusted signer.*signed by another key"):
        verify_directory(d, load_manifest(d), signers_from_files([other.public]))


@pytest.mark.parametrize("curve", ["p256", "p384"])
def test_key_curves_model_signing_supports(tmp_path: Path, curve: str) -> None:
    key = make_key(tmp_path / "keys", curve=curve)
    d = make_package(tmp_path / "pkg")
    sign_package(d, SigningKey(key.private))
    oms_api_verify(d, public_key=key.public)


def test_a_key_model_signing_cannot_use_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    d = make_package(tmp_path / "pkg")
    before = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}
    ed = make_key(tmp_path / "keys", "ed", curve="ed25519")
    result = run("sign", d, "--key", ed.private)
    assert isinstance(result.exception, SignatureError) and "ECDSA" in str(result.exception)
    public_as_private = run("package", d, "--sign", "--key", ed.public)
    assert isinstance(public_as_private.exception, SignatureError)
    assert {p: p.read_bytes() for p in d.rglob("*") if p.is_file()} == before


def test_an_encrypted_key_needs_its_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = make_key(tmp_path / "keys", password=b"s3cret")
    d = make_package(tmp_path / "pkg")
    result = run("sign", d, "--key", key.private)
    assert isinstance(result.exception, SignatureError) and "ADAPTERHUB_SIGNING_KEY_PASSWORD" in str(result.exception)
    assert not (d / SIGNATURE_FILENAME).exists()
    monkeypatch.setenv("ADAPTERHUB_SIGNING_KEY_PASSWORD", "s3cret")
    ok("sign", d, "--key", key.private)
    oms_api_verify(d, public_key=key.public)


def test_a_manifest_with_sources_or_a_listed_model_sig_is_not_signed(tmp_path: Path) -> None:
    key = make_key(tmp_path / "keys")
    d = make_package(tmp_path / "pkg")
    doc = json.loads((d / MANIFEST_FILENAME).read_text())
    doc["sources"] = [{"type": "https", "base_url": "https://mirror.example/toy/"}]
    (d / MANIFEST_FILENAME).write_text(json.dumps(doc))
    with pytest.raises(PublishError, match="no `sources`"):
        sign_package(d, SigningKey(key.private))
    reserved = make_package(tmp_path / "reserved", files={"model.sig": b"not a signature"})
    assert isinstance(run("package", reserved, "--no-card").exception, PublishError)
    assert (reserved / "model.sig").read_bytes() == b"not a signature"


def test_repackaging_keeps_a_valid_signature_and_drops_a_stale_one(tmp_path: Path) -> None:
    key = make_key(tmp_path / "keys")
    d = make_package(tmp_path / "pkg")
    ok("package", d, "--no-card", "--sign", "--key", key.private)
    signature = (d / SIGNATURE_FILENAME).read_bytes()
    ok("package", d, "--no-card")  # nothing changed: the signature still covers the release
    assert (d / SIGNATURE_FILENAME).read_bytes() == signature
    (d / "extra" / "labels.json").write_bytes(b'{"0": "neg", "1": "pos"}\n')
    result = ok("package", d, "--no-card")
    assert "removed model.sig" in result.output and not (d / SIGNATURE_FILENAME).exists()


def test_publishing_a_stale_signature_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    key = make_key(tmp_path / "keys")
    d = make_package(tmp_path / "pkg")
    sign_package(d, SigningKey(key.private))
    stale = (d / SIGNATURE_FILENAME).read_bytes()
    (d / "extra" / "labels.json").write_bytes(b'{"0": "neg", "1": "pos"}\n')
    ok("package", d, "--no-card")  # re-hashes the manifest and drops the signature; put it back by hand
    (d / SIGNATURE_FILENAME).write_bytes(stale)
    result = run("publish", d, "--to", tmp_path / "registry")
    assert isinstance(result.exception, SignatureError) and "labels.json was signed with another sha256" in str(
        result.exception)
    assert not (tmp_path / "registry").exists()


def test_cli_usage_errors(tmp_path: Path) -> None:
    key = make_key(tmp_path / "keys")
    d = make_package(tmp_path / "pkg")
    assert run("package", d, "--key", key.private).exit_code == 2  # --key without --sign
    assert run("package", d, "--sign").exit_code == 2  # --sign without --key
    assert run("verify-signature", d).exit_code == 2  # whose signature?
    unsigned = run("verify-signature", d, "--trust-key", key.public)
    assert isinstance(unsigned.exception, SignatureError) and "not signed" in str(unsigned.exception)
    not_a_key = run("verify-signature", d, "--trust-key", key.private)
    assert isinstance(not_a_key.exception, SignatureError) and "not a PEM public key" in str(not_a_key.exception)


def test_without_the_sign_extra_signing_and_verifying_say_what_to_install(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    key = make_key(tmp_path / "keys")
    d = make_package(tmp_path / "pkg")
    sign_package(d, SigningKey(key.private))
    ok("publish", d, "--to", tmp_path / "registry")
    for mod in [m for m in sys.modules if m.split(".")[0] == "model_signing"]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "model_signing", None)  # import model_signing -> ImportError
    for attempt in (lambda: sign_package(d, SigningKey(key.private)),
                    lambda: verify_directory(d, load_manifest(d), signers_from_files([key.public])),
                    lambda: pull("toy-adapter", index=tmp_path / "registry", trust=Trust.from_files([key.public]))):
        with pytest.raises(OptionalDependencyError, match=r"adapterhub\[sign\]"):
            attempt()
    assert not (tmp_path / "cache" / "adapters" / "toy-adapter" / "1.0.0").exists()
    # without trusted signers nothing needs model_signing: a signed release pulls as usual
    pulled = pull("toy-adapter", index=tmp_path / "registry")
    assert (pulled.path / SIGNATURE_FILENAME).is_file()


def test_commands_that_do_not_sign_do_not_import_model_signing(tmp_path: Path) -> None:
    key = make_key(tmp_path / "keys")
    d = make_package(tmp_path / "pkg")
    sign_package(d, SigningKey(key.private))
    code = (
        "import sys\n"
        "from adapterhub.cli import main\n"
        f"assert main(['package', {str(d)!r}, '--no-card']) == 0\n"
        f"assert main(['publish', {str(d)!r}, '--to', {str(tmp_path / 'registry')!r}]) == 0\n"
        f"assert main(['pull', 'toy-adapter', '--index', {str(tmp_path / 'registry')!r}, '-q']) == 0\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('model_signing', 'sigstore', 'OpenSSL'))\n"
        "assert not bad, bad\n"
    )
    env_cache = str(tmp_path / "cache2")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "ADAPTERHUB_CACHE": env_cache})
    assert done.returncode == 0, done.stdout + done.stderr
