"""Webhook signature verification over the raw body bytes.

HighLevel signs each delivery twice: ``x-ghl-signature`` (Ed25519, current, checked first) and
``x-wh-signature`` (RSA-SHA256 PKCS#1 v1.5, legacy, the fallback). Both base64. Keys are parsed
once per container; a bad key in the configuration fails the cold start naming the variable.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from ..errors import ConfigError

ED25519_HEADER = "x-ghl-signature"
RSA_HEADER = "x-wh-signature"

# HighLevel's published webhook verification keys (public constants). SPKI sha256 5a2c1b27... / 2f62045d...
PUBLISHED_ED25519_PUBLIC_KEY = b"""-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAi2HR1srL4o18O8BRa7gVJY7G7bupbN3H9AwJrHCDiOg=
-----END PUBLIC KEY-----
"""
PUBLISHED_RSA_PUBLIC_KEY = b"""-----BEGIN PUBLIC KEY-----
MIICIjANBgkqhkiG9w0BAQEFAAOCAg8AMIICCgKCAgEAokvo/r9tVgcfZ5DysOSC
Frm602qYV0MaAiNnX9O8KxMbiyRKWeL9JpCpVpt4XHIcBOK4u3cLSqJGOLaPuXw6
dO0t6Q/ZVdAV5Phz+ZtzPL16iCGeK9po6D6JHBpbi989mmzMryUnQJezlYJ3DVfB
csedpinheNnyYeFXolrJvcsjDtfAeRx5ByHQmTnSdFUzuAnC9/GepgLT9SM4nCpv
uxmZMxrJt5Rw+VUaQ9B8JSvbMPpez4peKaJPZHBbU3OdeCVx5klVXXZQGNHOs8gF
3kvoV5rTnXV0IknLBXlcKKAQLZcY/Q9rG6Ifi9c+5vqlvHPCUJFT5XUGG5RKgOKU
J062fRtN+rLYZUV+BjafxQauvC8wSWeYja63VSUruvmNj8xkx2zE/Juc+yjLjTXp
IocmaiFeAO6fUtNjDeFVkhf5LNb59vECyrHD2SQIrhgXpO4Q3dVNA5rw576PwTzN
h/AMfHKIjE4xQA1SZuYJmNnmVZLIZBlQAF9Ntd03rfadZ+yDiOXCCs9FkHibELhC
HULgCsnuDJHcrGNd5/Ddm5hxGQ0ASitgHeMZ0kcIOwKDOzOU53lDza6/Y09T7sYJ
PQe7z0cvj7aE4B+Ax1ZoZGPzpJlZtGXCsu9aTEGEnKzmsFqwcSsnw3JB31IGKAyk
T1hhTiaCeIY/OwwwNUY2yvcCAwEAAQ==
-----END PUBLIC KEY-----
"""


class Verdict(enum.Enum):
    ED25519 = "ed25519"
    RSA = "rsa"
    MISSING = "missing"
    INVALID = "invalid"

    @property
    def ok(self) -> bool:
        return self in (Verdict.ED25519, Verdict.RSA)


ED25519_VARIABLE = "WEBHOOK_ED25519_PUBLIC_KEY"
RSA_VARIABLE = "WEBHOOK_RSA_PUBLIC_KEY"
_PEM_ARMOUR = re.compile(r"-----(BEGIN|END) PUBLIC KEY-----")


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """``headers[name]`` with the name matched regardless of case (``name`` given in lower case)."""
    value = headers.get(name)
    if value is not None:
        return value
    for key, candidate in headers.items():
        if key.lower() == name:
            return candidate
    return None


def _normalise_pem(pem: bytes, variable: str) -> bytes:
    """Accept what fits in an environment variable or a CloudFormation parameter.

    A PEM with real newlines, with literal ``\\n`` escapes, squeezed onto one line, or the bare
    base64 of the DER SubjectPublicKeyInfo; re-armoured as a canonical PEM.
    """
    try:
        text = pem.decode("ascii")
    except UnicodeDecodeError:
        raise ConfigError(f"{variable} is not a PEM public key: not ASCII text") from None
    text = text.replace("\\n", "\n")
    armour = _PEM_ARMOUR.findall(text)
    if armour:
        if armour != ["BEGIN", "END"]:
            raise ConfigError(f"{variable} must hold exactly one PEM 'PUBLIC KEY' block")
        text = text.split("-----BEGIN PUBLIC KEY-----", 1)[1].split("-----END PUBLIC KEY-----", 1)[0]
    elif "-----BEGIN" in text:
        raise ConfigError(f"{variable} must be a PEM 'PUBLIC KEY' (SubjectPublicKeyInfo) block")
    payload = "".join(text.split())
    lines = [payload[i : i + 64] for i in range(0, len(payload), 64)]
    return ("-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n").encode()


def _load_public_key(pem: bytes, variable: str) -> object:
    canonical = _normalise_pem(pem, variable)
    try:
        return serialization.load_pem_public_key(canonical)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{variable} is not a usable PEM public key: {exc}") from exc


def spki_sha256(key: ed25519.Ed25519PublicKey | rsa.RSAPublicKey) -> str:
    """Hex sha256 of the DER SubjectPublicKeyInfo: the key's fingerprint, safe to log."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _load_ed25519(pem: bytes, variable: str) -> ed25519.Ed25519PublicKey:
    key = _load_public_key(pem, variable)
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ConfigError(f"{variable} must be an Ed25519 public key, got {type(key).__name__}")
    return key


def _load_rsa(pem: bytes, variable: str) -> rsa.RSAPublicKey:
    key = _load_public_key(pem, variable)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ConfigError(f"{variable} must be an RSA public key, got {type(key).__name__}")
    if key.key_size < 2048:
        raise ConfigError(f"{variable} is a {key.key_size}-bit RSA key; 2048 bits or more required")
    return key


def _decode(signature: str, expected_len: int) -> bytes | None:
    """Strict base64 of exactly the length the algorithm produces; None for anything else."""
    text = signature.strip()
    if not text or len(text) > 2 * expected_len:
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == expected_len else None


@dataclass(frozen=True)
class SignatureVerifier:
    """Verifies a body against the configured keys. Build once per container."""

    ed25519_key: ed25519.Ed25519PublicKey
    rsa_key: rsa.RSAPublicKey

    @classmethod
    def from_pem(
        cls,
        ed25519_pem: str | bytes | None = None,
        rsa_pem: str | bytes | None = None,
    ) -> SignatureVerifier:
        """Parse the keys (HighLevel's published ones when not given)."""

        def as_bytes(value: str | bytes | None, default: bytes) -> bytes:
            if value is None or (isinstance(value, str) and not value.strip()):
                return default
            return value.encode() if isinstance(value, str) else value

        return cls(
            ed25519_key=_load_ed25519(as_bytes(ed25519_pem, PUBLISHED_ED25519_PUBLIC_KEY), ED25519_VARIABLE),
            rsa_key=_load_rsa(as_bytes(rsa_pem, PUBLISHED_RSA_PUBLIC_KEY), RSA_VARIABLE),
        )

    def fingerprints(self) -> dict[str, str]:
        """SPKI sha256 of the keys in use (public; logged at cold start)."""
        return {"ed25519": spki_sha256(self.ed25519_key), "rsa": spki_sha256(self.rsa_key)}

    def verify(self, body: bytes, headers: Mapping[str, str]) -> Verdict:
        """Ed25519 first, RSA as fallback; header names matched regardless of case.

        An empty header counts as absent; any other value that is not a valid signature of
        ``body`` under the configured key (``N/A``, bad base64, wrong length, another body,
        a signature made by the other algorithm) is INVALID unless the other header verifies.
        """
        ghl = header_value(headers, ED25519_HEADER)
        legacy = header_value(headers, RSA_HEADER)
        if not ghl and not legacy:
            return Verdict.MISSING
        if ghl and self._verify_ed25519(body, ghl):
            return Verdict.ED25519
        if legacy and self._verify_rsa(body, legacy):
            return Verdict.RSA
        return Verdict.INVALID

    def _verify_ed25519(self, body: bytes, signature: str) -> bool:
        raw = _decode(signature, 64)
        if raw is None:
            return False
        try:
            self.ed25519_key.verify(raw, body)
        except InvalidSignature:
            return False
        return True

    def _verify_rsa(self, body: bytes, signature: str) -> bool:
        raw = _decode(signature, self.rsa_key.key_size // 8)
        if raw is None:
            return False
        try:
            self.rsa_key.verify(raw, body, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return False
        return True
