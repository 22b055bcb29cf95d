"""CSRF protection: every form carries the session's token, compared in constant time.

SameSite=Strict already keeps the cookie off cross-site requests; the token is the second lock
(and the one that holds for a browser that ignores SameSite). The login form, which has no session
yet, carries a token bound to a short-lived pre-session cookie instead.
"""

from __future__ import annotations

import hmac
import secrets

__all__ = ["FIELD", "LOGIN_COOKIE", "matches", "new_token"]

FIELD = "csrf_token"
LOGIN_COOKIE = "otv_practice_login"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def matches(expected: str | None, submitted: object) -> bool:
    """True only when both are non-empty strings and equal (constant-time comparison)."""
    if not expected or not isinstance(submitted, str) or not submitted:
        return False
    return hmac.compare_digest(expected.encode(), submitted.encode())
