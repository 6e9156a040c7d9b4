"""Pseudonymous patient keys: HMAC-SHA-256 (site secret) over the assigning authority and the
medical record number. HL7 (PID-3, type ``MR``) and FHIR (``identifier`` of type ``MR``) give the
same key for the same patient. The key never reveals the MRN without the secret."""

from __future__ import annotations

import hashlib
import hmac

PREFIX = "pk-"


def normalise_authority(authority: str) -> str:
    return authority.strip().upper()


def patient_key(secret: bytes, authority: str, mrn: str) -> str:
    """``pk-`` + 32 hex digits (128 bits of the HMAC); a valid NATS subject token."""
    message = f"{normalise_authority(authority)}\x1f{mrn.strip()}".encode()
    return PREFIX + hmac.new(secret, message, hashlib.sha256).hexdigest()[:32]


def keyed_token(secret: bytes, kind: str, value: str) -> str:
    """A keyed hash for other identifying values the gateway keeps in its state (locations)."""
    return hmac.new(secret, f"{kind}\x1f{value}".encode(), hashlib.sha256).hexdigest()[:32]
