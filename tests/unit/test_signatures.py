"""Signature verification: Ed25519 ``x-ghl-signature`` first, RSA-SHA256 ``x-wh-signature`` fallback.

Keys are generated fresh for the module (Ed25519 and RSA-4096); a known-answer test pins the
Ed25519 encoding; HighLevel's published keys are checked by SPKI fingerprint.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from appointment_enricher.errors import ConfigError
from appointment_enricher.intake.signatures import (
    ED25519_HEADER,
    PUBLISHED_ED25519_PUBLIC_KEY,
    PUBLISHED_RSA_PUBLIC_KEY,
    RSA_HEADER,
    SignatureVerifier,
    Verdict,
    spki_sha256,
)

BODY = b'{"type":"AppointmentCreate","locationId":"loc_1","appointment":{"id":"appt_1"}}'
SHARED_KEYS_FILE = Path(__file__).resolve().parents[2] / ".." / "shared" / "highlevel-webhook-keys.pem"


def _pem(key: ed25519.Ed25519PublicKey | rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _der(key: object) -> bytes:
    assert isinstance(key, ed25519.Ed25519PublicKey | rsa.RSAPublicKey)
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@pytest.fixture(scope="module")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=4096)


@pytest.fixture(scope="module")
def verifier(ed_key: ed25519.Ed25519PrivateKey, rsa_key: rsa.RSAPrivateKey) -> SignatureVerifier:
    return SignatureVerifier.from_pem(_pem(ed_key.public_key()), _pem(rsa_key.public_key()))


def ed_sig(key: ed25519.Ed25519PrivateKey, body: bytes = BODY) -> str:
    return _b64(key.sign(body))


def rsa_sig(key: rsa.RSAPrivateKey, body: bytes = BODY) -> str:
    return _b64(key.sign(body, padding.PKCS1v15(), hashes.SHA256()))


# ---- valid signatures ---------------------------------------------------------------------------


def test_ed25519_signature_verifies(verifier, ed_key):
    assert verifier.verify(BODY, {ED25519_HEADER: ed_sig(ed_key)}) is Verdict.ED25519


def test_rsa_signature_verifies_as_fallback(verifier, rsa_key):
    assert verifier.verify(BODY, {RSA_HEADER: rsa_sig(rsa_key)}) is Verdict.RSA


def test_ed25519_is_checked_first(verifier, ed_key, rsa_key):
    headers = {ED25519_HEADER: ed_sig(ed_key), RSA_HEADER: rsa_sig(rsa_key)}
    assert verifier.verify(BODY, headers) is Verdict.ED25519


def test_valid_rsa_rescues_an_unusable_ed25519_header(verifier, rsa_key):
    headers = {ED25519_HEADER: "N/A", RSA_HEADER: rsa_sig(rsa_key)}
    assert verifier.verify(BODY, headers) is Verdict.RSA


@pytest.mark.parametrize("name", ["X-GHL-Signature", "X-Ghl-Signature", "x-ghl-signature", "X-GHL-SIGNATURE"])
def test_ed25519_header_name_matched_regardless_of_case(verifier, ed_key, name):
    assert verifier.verify(BODY, {name: ed_sig(ed_key)}) is Verdict.ED25519


@pytest.mark.parametrize("name", ["X-WH-Signature", "X-Wh-Signature", "X-WH-SIGNATURE"])
def test_rsa_header_name_matched_regardless_of_case(verifier, rsa_key, name):
    assert verifier.verify(BODY, {name: rsa_sig(rsa_key)}) is Verdict.RSA


def test_surrounding_whitespace_in_the_header_value_is_tolerated(verifier, ed_key):
    assert verifier.verify(BODY, {ED25519_HEADER: f" {ed_sig(ed_key)} "}) is Verdict.ED25519


# ---- missing and invalid -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {ED25519_HEADER: ""}, {RSA_HEADER: ""}, {ED25519_HEADER: "", RSA_HEADER: ""}, {"content-type": "x"}],
    ids=["none", "empty-ghl", "empty-wh", "both-empty", "unrelated"],
)
def test_no_signature_is_missing(verifier, headers):
    assert verifier.verify(BODY, headers) is Verdict.MISSING


def _invalid_cases(
    ed_key: ed25519.Ed25519PrivateKey, rsa_key: rsa.RSAPrivateKey
) -> dict[str, dict[str, str]]:
    other_body = BODY.replace(b"appt_1", b"appt_2")
    good_ed = ed_key.sign(BODY)
    return {
        "ghl N/A": {ED25519_HEADER: "N/A"},
        "wh N/A": {RSA_HEADER: "N/A"},
        "both N/A": {ED25519_HEADER: "N/A", RSA_HEADER: "N/A"},
        "ghl malformed base64": {ED25519_HEADER: "not*base64!!"},
        "ghl bad padding": {ED25519_HEADER: _b64(good_ed)[:-2]},
        "ghl urlsafe alphabet": {ED25519_HEADER: base64.urlsafe_b64encode(b"\xfb\xff" * 32).decode()},
        "ghl too short": {ED25519_HEADER: _b64(good_ed[:63])},
        "ghl too long": {ED25519_HEADER: _b64(good_ed + b"\x00")},
        "ghl other body": {ED25519_HEADER: ed_sig(ed_key, other_body)},
        "ghl flipped bit": {ED25519_HEADER: _b64(bytes([good_ed[0] ^ 1]) + good_ed[1:])},
        "wh other body": {RSA_HEADER: rsa_sig(rsa_key, other_body)},
        "wh wrong length": {RSA_HEADER: _b64(b"\x01" * 256)},
        "wh malformed base64": {RSA_HEADER: "%%%%"},
        "rsa signature in ghl header": {ED25519_HEADER: rsa_sig(rsa_key)},
        "ed25519 signature in wh header": {RSA_HEADER: ed_sig(ed_key)},
        "signatures swapped": {ED25519_HEADER: rsa_sig(rsa_key), RSA_HEADER: ed_sig(ed_key)},
        "other key ed25519": {ED25519_HEADER: ed_sig(ed25519.Ed25519PrivateKey.generate())},
        "valid ghl of other body + N/A wh": {ED25519_HEADER: ed_sig(ed_key, other_body), RSA_HEADER: "N/A"},
    }


def test_every_unusable_signature_is_invalid(verifier, ed_key, rsa_key):
    for case, headers in _invalid_cases(ed_key, rsa_key).items():
        assert verifier.verify(BODY, headers) is Verdict.INVALID, case


def test_signature_of_the_body_does_not_cover_a_modified_body(verifier, ed_key, rsa_key):
    headers = {ED25519_HEADER: ed_sig(ed_key), RSA_HEADER: rsa_sig(rsa_key)}
    assert verifier.verify(BODY + b" ", headers) is Verdict.INVALID


def test_key_of_the_other_algorithm_signing_is_rejected(verifier, rsa_key):
    """An RSA key from another pair (same size) must not verify against the configured one."""
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    lone = SignatureVerifier.from_pem(None, _pem(stranger.public_key()))
    assert lone.verify(BODY, {RSA_HEADER: rsa_sig(rsa_key)}) is Verdict.INVALID


# ---- known answer -----------------------------------------------------------------------------


def test_rfc8032_test_vector_2_verifies():
    """RFC 8032 section 7.1 TEST 2: an independent check of the Ed25519 primitive we rely on."""
    secret = bytes.fromhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
    expected = bytes.fromhex(
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
    )
    key = ed25519.Ed25519PrivateKey.from_private_bytes(secret)
    assert key.sign(b"\x72") == expected
    verifier = SignatureVerifier.from_pem(_pem(key.public_key()), None)
    assert verifier.verify(b"\x72", {ED25519_HEADER: _b64(expected)}) is Verdict.ED25519
    assert verifier.verify(b"\x73", {ED25519_HEADER: _b64(expected)}) is Verdict.INVALID


def test_known_answer_webhook_body_signed_by_fixed_test_key():
    seed = bytes(range(32))
    body = (
        b'{"type":"AppointmentCreate","locationId":"loc_KAT1","appointment":{"id":"appt_KAT1"},'
        b'"webhookId":"wh-kat-0001"}'
    )
    expected = "kHgSAplJgDcM/ncNP8vUlyp3vbz2DD8bLPYsm+NDshigeTfMH1oO7AdzjWxb3/fIBCI3384/PCMq0oq8H43QBw=="
    key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    assert _b64(key.sign(body)) == expected
    verifier = SignatureVerifier.from_pem(_pem(key.public_key()), None)
    assert verifier.verify(body, {"X-GHL-Signature": expected}) is Verdict.ED25519


# ---- configuration --------------------------------------------------------------------------


def test_published_keys_are_the_defaults_and_match_their_fingerprints():
    verifier = SignatureVerifier.from_pem()
    ed_fp = hashlib.sha256(_der(verifier.ed25519_key)).hexdigest()
    rsa_fp = hashlib.sha256(_der(verifier.rsa_key)).hexdigest()
    assert ed_fp.startswith("5a2c1b27")
    assert rsa_fp.startswith("2f62045d")
    assert verifier.rsa_key.key_size == 4096
    assert verifier.fingerprints() == {"ed25519": ed_fp, "rsa": rsa_fp}
    # Empty strings (an unset CloudFormation parameter) mean "use the published keys" too.
    assert SignatureVerifier.from_pem("", "  ").fingerprints() == verifier.fingerprints()


def test_embedded_keys_equal_the_shared_published_keys_file():
    if not SHARED_KEYS_FILE.is_file():
        pytest.skip(f"{SHARED_KEYS_FILE} is absent (outside the project checkout); nothing to compare")
    text = SHARED_KEYS_FILE.read_text()
    blocks = re.findall(r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", text, re.DOTALL)
    assert len(blocks) == 2
    loaded = [serialization.load_pem_public_key(b.encode()) for b in blocks]
    shared_ed = next(k for k in loaded if isinstance(k, ed25519.Ed25519PublicKey))
    shared_rsa = next(k for k in loaded if isinstance(k, rsa.RSAPublicKey))
    assert _der(shared_ed) == _der(serialization.load_pem_public_key(PUBLISHED_ED25519_PUBLIC_KEY))
    assert _der(shared_rsa) == _der(serialization.load_pem_public_key(PUBLISHED_RSA_PUBLIC_KEY))


def test_configured_keys_replace_the_published_ones(verifier, ed_key, rsa_key):
    assert verifier.fingerprints() == {
        "ed25519": spki_sha256(ed_key.public_key()),
        "rsa": spki_sha256(rsa_key.public_key()),
    }
    published = SignatureVerifier.from_pem()
    assert published.verify(BODY, {ED25519_HEADER: ed_sig(ed_key)}) is Verdict.INVALID


def test_pem_forms_that_fit_an_env_var_are_accepted(ed_key):
    pem = _pem(ed_key.public_key()).decode()
    payload = "".join(line for line in pem.splitlines() if "-----" not in line)
    forms = {
        "str": pem,
        "literal backslash-n": pem.replace("\n", "\\n"),
        "one line": pem.replace("\n", " "),
        "bare base64 DER": payload,
        "crlf": pem.replace("\n", "\r\n"),
    }
    for form, value in forms.items():
        key = SignatureVerifier.from_pem(value, None).ed25519_key
        assert _der(key) == _der(ed_key.public_key()), form


def _config_error(ed: str | bytes | None, rsa_pem: str | bytes | None) -> str:
    with pytest.raises(ConfigError) as info:
        SignatureVerifier.from_pem(ed, rsa_pem)
    return str(info.value)


def test_bad_keys_fail_naming_the_variable(ed_key, rsa_key):
    ed_pem = _pem(ed_key.public_key())
    rsa_pem = _pem(rsa_key.public_key())
    weak = _pem(rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key())
    private = ed_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    ed_cases = {
        "garbage": "not a key",
        "rsa key for ed25519": rsa_pem,
        "truncated": ed_pem[:40] + b"\n-----END PUBLIC KEY-----\n",
        "private key": private,
        "two keys": ed_pem + ed_pem,
        "non-ascii": "-----BEGIN PUBLIC KEY-----\nMCow\u00e9\n-----END PUBLIC KEY-----",
    }
    for case, value in ed_cases.items():
        assert "WEBHOOK_ED25519_PUBLIC_KEY" in _config_error(value, rsa_pem), case
    rsa_cases = {"garbage": "MIIB!!", "ed25519 key for rsa": ed_pem, "1024-bit": weak}
    for case, value in rsa_cases.items():
        message = _config_error(ed_pem, value)
        assert "WEBHOOK_RSA_PUBLIC_KEY" in message, case
        assert "WEBHOOK_ED25519_PUBLIC_KEY" not in message, case
