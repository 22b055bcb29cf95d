"""Partners, their public keys and the practices that granted them access, in the state store.

Keys live in the shared store so that adding or revoking one takes effect on every gateway
replica at once, without a restart: several keys per partner may be valid (rotation), each has an
id, and a revoked key is refused from the moment it is revoked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from gateway.state_store import StateStore, Tx
from otv_sdk.resources import is_valid_practice_id
from otv_sdk.signing import public_key_bytes

__all__ = ["PVS_SERVICES", "SERVICES", "PartnerKey", "PartnerRegistry", "bump_version", "local_changes"]

# What a grant may name; "*" means all of these partner services.
SERVICES = ("reader", "writer", "patient_lookup", "consent")
# Services for a practice's own PVS, never included in "*": uploading snapshots or serving the
# practice through a connector replaces what every partner sees, and `practice` decides on its
# bookings and licences (PracticeService), so each is granted by name.
PVS_SERVICES = ("snapshot", "connector", "practice")


@dataclass(frozen=True, slots=True)
class PartnerKey:
    key_id: str
    partner: str
    public_key: str
    revoked: bool


_local_changes = 0


def local_changes() -> int:
    """How many changes of keys or grants this process made: the authenticator looks again at once
    after one (admissions.py), where changes made elsewhere count within its bound."""
    return _local_changes


def bump_version(tx: Tx) -> None:
    """Tell every gateway that keys or grants changed."""
    global _local_changes
    tx.execute(
        "INSERT INTO registry_version (id, version) VALUES (1, 1)"
        " ON CONFLICT (id) DO UPDATE SET version = registry_version.version + 1"
    )
    _local_changes += 1


class PartnerRegistry:
    def __init__(self, store: StateStore) -> None:
        self._store = store

    def add_partner(self, partner_id: str, display_name: str = "") -> None:
        if not partner_id or len(partner_id) > 64 or not partner_id.replace("-", "").replace("_", "").isalnum():
            raise ValueError("partner ids are 1-64 letters, digits, '-' or '_'")

        def work(tx: Tx) -> None:
            tx.execute(
                "INSERT INTO partners (id, display_name, create_s) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (partner_id, display_name or partner_id, int(time.time())),
            )
            bump_version(tx)

        self._store.run_sync(work)

    def add_key(self, partner_id: str, key_id: str, public_key: str) -> None:
        public_key_bytes(public_key)  # refuse anything that is not an Ed25519 public key

        def work(tx: Tx) -> None:
            if tx.one("SELECT id FROM partners WHERE id = ?", (partner_id,)) is None:
                raise ValueError(f"unknown partner {partner_id!r}; add the partner first")
            if tx.one("SELECT key_id FROM partner_keys WHERE key_id = ?", (key_id,)) is not None:
                raise ValueError(f"key id {key_id!r} is taken; key ids are never reused")
            tx.execute(
                "INSERT INTO partner_keys (key_id, partner, public_key, create_s) VALUES (?, ?, ?, ?)",
                (key_id, partner_id, public_key, int(time.time())),
            )
            bump_version(tx)

        self._store.run_sync(work)

    def revoke_key(self, key_id: str) -> None:
        def work(tx: Tx) -> int:
            changed = tx.execute(
                "UPDATE partner_keys SET revoke_s = ? WHERE key_id = ? AND revoke_s IS NULL", (int(time.time()), key_id)
            )
            bump_version(tx)
            return changed

        if self._store.run_sync(work) != 1:
            raise ValueError(f"no active key {key_id!r}")

    def grant(self, partner_id: str, practice_id: str, services: tuple[str, ...] = ("*",)) -> None:
        if not is_valid_practice_id(practice_id):
            raise ValueError(f"{practice_id!r} is not a practice id")
        unknown = [s for s in services if s != "*" and s not in SERVICES + PVS_SERVICES]
        if unknown:
            raise ValueError(f"unknown services {unknown}; choose from {', '.join(SERVICES + PVS_SERVICES)} or *")

        def work(tx: Tx) -> None:
            tx.execute(
                "INSERT INTO grants (partner, practice, services) VALUES (?, ?, ?)"
                " ON CONFLICT (partner, practice) DO UPDATE SET services = excluded.services",
                (partner_id, practice_id, ",".join(services)),
            )
            bump_version(tx)

        self._store.run_sync(work)

    def revoke_grant(self, partner_id: str, practice_id: str) -> None:
        def work(tx: Tx) -> None:
            tx.execute("DELETE FROM grants WHERE partner = ? AND practice = ?", (partner_id, practice_id))
            bump_version(tx)

        self._store.run_sync(work)

    def list_keys(self) -> list[PartnerKey]:
        rows = self._store.run_sync(
            lambda tx: tx.all("SELECT key_id, partner, public_key, revoke_s FROM partner_keys ORDER BY partner, key_id")
        )
        return [PartnerKey(r["key_id"], r["partner"], r["public_key"], r["revoke_s"] is not None) for r in rows]

    def list_grants(self) -> list[tuple[str, str, str]]:
        rows = self._store.run_sync(
            lambda tx: tx.all("SELECT partner, practice, services FROM grants ORDER BY partner, practice")
        )
        return [(r["partner"], r["practice"], r["services"]) for r in rows]
