"""Time-based one-time codes (RFC 6238 over RFC 4226's HOTP) and the sealing of their secrets.

Written here rather than taken from django-otp: its devices keep the TOTP key and the static
codes in plain text, and Tally keeps the secret encrypted (Fernet) and recovery codes hashed, so
only these few lines of HMAC would have come from it. The RFC's own test vectors hold them
(tests/teams/test_two_factor.py).
"""

import base64
import hashlib
import hmac
import secrets
import struct
import time
from urllib.parse import quote, urlencode

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

STEP = 30  # seconds a code is valid for
DIGITS = 6
# Codes of the step before and after also pass: a phone's clock a little off, or a code typed
# as it changed.
DRIFT = 1
ISSUER = "Tally"


def new_secret() -> bytes:
    """160 random bits, the length RFC 4226 recommends for HMAC-SHA1."""
    return secrets.token_bytes(20)


def b32(secret: bytes) -> str:
    return base64.b32encode(secret).decode().rstrip("=")


def grouped(secret: bytes) -> str:
    """The secret as a person types it into an app: groups of four."""
    text = b32(secret)
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


def provisioning_uri(secret: bytes, account: str) -> str:
    label = quote(f"{ISSUER}:{account}")
    query = urlencode(
        {"secret": b32(secret), "issuer": ISSUER, "algorithm": "SHA1", "digits": DIGITS, "period": STEP}
    )
    return f"otpauth://totp/{label}?{query}"


def hotp(secret: bytes, counter: int, *, digits: int = DIGITS, digest=hashlib.sha1) -> str:
    mac = hmac.new(secret, struct.pack(">Q", counter), digest).digest()
    offset = mac[-1] & 0x0F
    number = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10**digits).zfill(digits)


def step_at(when: float | None = None) -> int:
    return int((time.time() if when is None else when) // STEP)


def matching_step(secret: bytes, code: str, *, when: float | None = None) -> int | None:
    """The time step whose code `code` is (within the allowed drift), or None."""
    code = "".join(code.split())
    if len(code) != DIGITS or not code.isdigit():
        return None
    now = step_at(when)
    found = None
    for step in range(now - DRIFT, now + DRIFT + 1):
        # Every candidate is compared, in constant time, whatever matched before.
        if hmac.compare_digest(hotp(secret, step), code):
            found = step
    return found


def _fernet() -> Fernet:
    return Fernet(settings.TOTP_ENCRYPTION_KEY)


def seal(secret: bytes) -> str:
    return _fernet().encrypt(secret).decode()


def unseal(token: str) -> bytes:
    try:
        return _fernet().decrypt(token.encode())
    except InvalidToken:
        raise ValueError(
            "A two-factor secret cannot be decrypted: TOTP_ENCRYPTION_KEY is not the key it was sealed with."
        ) from None
