"""Which partners may book at the practice, and with which services: the practice's licences.

The gateway's operator licenses a partner for a practice (a grant); the practice then narrows or
widens what that partner may use among the services, and its next call is admitted by the new
list. Grants for the practice's own PVS are no partner's licence and stay out of the practice's
reach.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.partners import PVS_SERVICES, SERVICES, bump_version
from gateway.practice_history import record_audit
from gateway.practice_scope import PracticeScope
from gateway.state_store import Row, Tx
from otv_sdk.errors import InvalidArgument, NotFound

__all__ = ["PartnerLicence", "PracticeLicences"]


@dataclass(frozen=True, slots=True)
class PartnerLicence:
    partner_id: str
    display_name: str
    services: frozenset[str]


class PracticeLicences:
    """The licensing part of a practice's desk."""

    def __init__(self, scope: PracticeScope) -> None:
        self._scope = scope

    async def licences(self) -> list[PartnerLicence]:
        """The partners the gateway's operator licensed for this practice, with what each may use."""
        rows = await self._scope.store.run(
            lambda tx: tx.all(
                "SELECT g.partner, g.services, p.display_name FROM grants g JOIN partners p ON p.id = g.partner"
                " WHERE g.practice = ? ORDER BY g.partner",
                (self._scope.practice_id,),
            )
        )
        return [_licence(r) for r in rows if not _practice_principal(r["services"])]

    async def set_licence(self, actor: str, partner_id: str, services: frozenset[str]) -> PartnerLicence:
        """Grant or withdraw a partner's services at this practice; its next call is admitted by them."""
        unknown = sorted(s for s in services if s not in SERVICES)
        if unknown:
            raise InvalidArgument.field("services", f"names unknown services {unknown}; choose from {SERVICES}")
        now = self._scope.now()

        def work(tx: Tx) -> Row:
            row = tx.one(
                "SELECT g.partner, g.services, p.display_name FROM grants g JOIN partners p ON p.id = g.partner"
                " WHERE g.practice = ? AND g.partner = ?",
                (self._scope.practice_id, partner_id),
            )
            if row is None or _practice_principal(row["services"]):
                raise NotFound.field("partner", "is not a partner licensed for this practice by the gateway's operator")
            listed = ",".join(s for s in SERVICES if s in services)
            tx.execute(
                "UPDATE grants SET services = ? WHERE partner = ? AND practice = ?",
                (listed, partner_id, self._scope.practice_id),
            )
            bump_version(tx)
            record_audit(tx, self._scope.practice_id, partner_id, "licence", listed or "none", f"ok by {actor}", now)
            return {**row, "services": listed}

        return _licence(await self._scope.store.run(work))


def _services(text: str) -> frozenset[str]:
    names = {s for s in text.split(",") if s}
    return frozenset(SERVICES) if "*" in names else frozenset(s for s in names if s in SERVICES)


def _practice_principal(services: str) -> bool:
    """A grant naming a PVS-only service belongs to the practice's own PVS, not to a partner."""
    return any(s in PVS_SERVICES for s in services.split(","))


def _licence(row: Row) -> PartnerLicence:
    return PartnerLicence(row["partner"], row["display_name"], _services(row["services"]))
