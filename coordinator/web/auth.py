"""HTTP Basic authentication for the supervisor view and its API.

Basic auth keeps the pages plain (no login form, no session store) and works for scripts;
the coordinator should sit behind TLS or on the hall LAN. Without a configured password
nobody gets in: an unconfigured hall must not have an open supervisor desk.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from hallq.config import CoordinatorConfig

REALM = 'Basic realm="hallq supervisor", charset="UTF-8"'


def supervisor_from(header: str | None, settings: CoordinatorConfig) -> str | None:
    """The supervisor's user name when the Authorization header carries valid credentials."""
    secret = settings.supervisor_password
    if secret is None or not header or not header.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    # compare both even when the first differs, so timing says nothing about which failed
    user_ok = hmac.compare_digest(user.encode(), settings.supervisor_user.encode())
    password_ok = hmac.compare_digest(password.encode(),
                                      secret.get_secret_value().encode())
    return user if user_ok and password_ok else None
