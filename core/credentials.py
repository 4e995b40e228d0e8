"""Device and service secrets for the MQTT broker, hashed in Mosquitto's `$7$` format (PBKDF2-SHA512).

One hash format serves both brokers: Mosquitto reads it from its password file, and the embedded
broker's auth plugin checks it with the same function. Secrets are random (160 bits), so the hash
needs no more iterations than Mosquitto's own tool uses by default.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

ITERATIONS = 1000
SALT_BYTES = 12
#: Demo-city device secrets are derived from this public key so that simulators and `mosquitto_pub`
#: can log in without provisioning. They are valid only while the demo city is loaded.
DEMO_KEY = b"gridhub-demo-city-310104"


def new_secret() -> str:
    """A fresh random secret, URL- and shell-safe."""
    return secrets.token_urlsafe(20)


def password_hash(secret: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """`$7$ITERATIONS$SALT$HASH` exactly as `mosquitto_passwd` writes it."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(secret: str, hashed: str) -> bool:
    """True when `secret` matches a `$7$` hash; False for a wrong secret or a malformed hash."""
    try:
        _, scheme, iterations, salt, digest = hashed.split("$")
        if scheme != "7":
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = hashlib.pbkdf2_hmac("sha512", secret.encode(), base64.b64decode(salt, validate=True),
                                     int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def demo_secret(device_id: str) -> str:
    """The demo city's well-known secret for `device_id`."""
    mac = hmac.new(DEMO_KEY, device_id.encode(), hashlib.sha256).digest()
    return base64.b32encode(mac[:15]).decode().lower()
