"""The otv-session-v1 sessions this replica opened, and the replay window of each.

Why sessions live in this replica's memory only: replay protection must hold across replicas
without a store write per call. A session is accepted only by the replica that opened it (its key
was agreed there and is nowhere else: not in the store, not on another replica), so a call replayed
to another replica names a session that replica does not know, and a call replayed to this replica
is refused by the session's sequence window. A restarted replica knows no sessions: its partners
open new ones (the partner client does it on its own). Load balancers route every call of a session
to its replica by hashing the `x-otv-session` header (docs/deployment.md).

Bounds, so that no partner can fill this replica's memory: a session lives SESSION_SECONDS, a
partner holds at most MAX_SESSIONS_PER_PARTNER at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from otv_sdk.session_scheme import KeyAgreement, derive_session_key

__all__ = [
    "MAX_SESSIONS_PER_PARTNER",
    "REPLAY_WINDOW",
    "SESSION_SECONDS",
    "OpenedSession",
    "ReplayWindow",
    "Session",
    "SessionBook",
    "SessionTaken",
    "SessionsExhausted",
]

SESSION_SECONDS = 600
MAX_SESSIONS_PER_PARTNER = 256
REPLAY_WINDOW = 4096


class SessionTaken(Exception):
    """The session id is already in use (ALREADY_EXISTS): the partner picks another."""


class SessionsExhausted(Exception):
    """The partner holds as many open sessions as it may (RESOURCE_EXHAUSTED)."""


class ReplayWindow:
    """Which sequence numbers were seen: the highest, and a bit for each of the WINDOW below it.

    The anti-replay window of IPsec (RFC 4303, 3.4.3): calls in flight may overtake each other by up
    to WINDOW numbers; every number is accepted at most once; older ones are refused.
    """

    __slots__ = ("_mask", "_seen", "_top", "_window")

    def __init__(self, window: int = REPLAY_WINDOW) -> None:
        self._top = 0
        self._seen = 0  # bit i: number top - i was accepted
        self._window = window
        self._mask = (1 << window) - 1

    def accept(self, sequence: int) -> bool:
        if sequence > self._top:
            shift = sequence - self._top
            self._seen = ((self._seen << shift) | 1) & self._mask if shift < self._window else 1
            self._top = sequence
            return True
        offset = self._top - sequence
        if offset >= self._window or self._seen >> offset & 1:
            return False
        self._seen |= 1 << offset
        return True


@dataclass(slots=True)
class Session:
    id: str
    partner: str
    key_id: str
    key: bytes
    expire_s: float
    window: ReplayWindow = field(default_factory=ReplayWindow)
    _keyed: hmac.HMAC | None = None

    def mac(self, canonical: bytes) -> str:
        """HMAC-SHA256 of a call's canonical string (otv_sdk.session_scheme.call_mac), from a state
        keyed once per session: copying it costs less than keying HMAC anew on every call."""
        if self._keyed is None:
            self._keyed = hmac.new(self.key, digestmod=hashlib.sha256)
        keyed = self._keyed.copy()
        keyed.update(canonical)
        return base64.urlsafe_b64encode(keyed.digest()).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class OpenedSession:
    id: str
    server_public_key: bytes
    expire_s: float
    replay_window: int


class SessionBook:
    def __init__(
        self,
        audience: str,
        clock: Callable[[], float] = time.time,
        lifetime_s: float = SESSION_SECONDS,
        per_partner: int = MAX_SESSIONS_PER_PARTNER,
    ) -> None:
        self._audience = audience
        self._clock = clock
        self._lifetime = lifetime_s
        self._per_partner = per_partner
        self._sessions: dict[str, Session] = {}
        self._by_partner: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, partner: str, key_id: str, session_id: str, client_public_key: bytes) -> OpenedSession:
        """Agree a key with the partner's public key (ValueError if it is not one) and keep the session."""
        now = self._clock()
        self._forget_expired(partner, now)
        if session_id in self._sessions:
            raise SessionTaken(session_id)
        if len(self._by_partner.get(partner, ())) >= self._per_partner:
            raise SessionsExhausted(partner)
        agreement = KeyAgreement()
        shared = agreement.shared_secret(client_public_key)
        key = derive_session_key(shared, session_id, key_id, self._audience, client_public_key, agreement.public_key)
        session = Session(session_id, partner, key_id, key, now + self._lifetime)
        self._sessions[session_id] = session
        self._by_partner.setdefault(partner, set()).add(session_id)
        return OpenedSession(session_id, agreement.public_key, session.expire_s, REPLAY_WINDOW)

    def get(self, session_id: str) -> Session | None:
        """The session if it is open; an expired one is forgotten here."""
        session = self._sessions.get(session_id)
        if session is not None and session.expire_s <= self._clock():
            self.close(session_id)
            return None
        return session

    def close(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            ids = self._by_partner.get(session.partner)
            if ids is not None:
                ids.discard(session_id)
                if not ids:
                    del self._by_partner[session.partner]

    def _forget_expired(self, partner: str, now: float) -> None:
        """Expired sessions of this partner go when it opens a new one; others' when they call."""
        for session_id in list(self._by_partner.get(partner, ())):
            if self._sessions[session_id].expire_s <= now:
                self.close(session_id)
