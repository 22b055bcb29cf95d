"""Privacy rules the gateway enforces for every adapter, even one that gets them wrong.

- Partners see partner-scoped patient ids (`patient_ids.py`), never the PVS's.
- A patient who denied consent for the calling partner is invisible to it: consent reads and
  writes answer exactly as for a patient that does not exist.
- Only patients who granted consent are listed as shared.
- A partner may record only a grant; denying or revoking is the practice's decision.
The adapter is wrapped once per adapter instance; the wrapper holds no per-partner state.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from gateway.booking import BookingDesk, PatientIds
from gateway.partner_availability import ClaimAwareReader
from gateway.patient_ids import PatientIdScope
from gateway.practice_reader import PracticeReader
from otv_sdk.errors import InvalidArgument, NotFound, PermissionDenied
from otv_sdk.models import Consent, ConsentEvidence, ConsentState, Patient
from otv_sdk.ports import (
    Adapter,
    CallContext,
    ConsentPort,
    MatchOutcome,
    Page,
    PageRequest,
    PatientLookupPort,
    PatientQuery,
)

__all__ = ["protect"]

log = logging.getLogger("otv.gateway.privacy")


def _unknown_patient() -> NotFound:
    # The one answer for "no such patient", "not yours" and "denied": nothing tells them apart.
    return NotFound.field("name", "no such patient")


class _Guard:
    def __init__(self, scope: PatientIdScope, consent: ConsentPort | None) -> None:
        self.scope = scope
        self.consent = consent

    def outward(self, ctx: CallContext, patient: Patient) -> Patient:
        return dataclasses.replace(patient, id=self.scope.to_partner(ctx.partner_id, patient.id))

    def inward(self, ctx: CallContext, scoped_id: str) -> str:
        pvs_id = self.scope.from_partner(ctx.partner_id, scoped_id)
        if pvs_id is None:
            raise _unknown_patient()
        return pvs_id

    def outward_id(self, ctx: CallContext, pvs_id: str) -> str:
        return self.scope.to_partner(ctx.partner_id, pvs_id)

    async def booking_patient(self, ctx: CallContext, scoped_id: str) -> str:
        """The PVS id of a patient this partner may book for; unknown and denied look the same."""
        pvs_id = self.scope.from_partner(ctx.partner_id, scoped_id)
        if pvs_id is None:
            raise NotFound.field("patient", "no such patient")
        try:
            state = await self.state(ctx, pvs_id)
        except NotFound:
            raise NotFound.field("patient", "no such patient") from None
        if state is ConsentState.DENIED:
            raise NotFound.field("patient", "no such patient")
        return pvs_id

    async def state(self, ctx: CallContext, pvs_id: str) -> ConsentState:
        if self.consent is None:
            return ConsentState.OPEN
        try:
            return (await self.consent.get_consent(ctx, pvs_id)).state
        except NotFound:
            raise _unknown_patient() from None


class _GuardedPatientLookup(PatientLookupPort):
    def __init__(self, inner: PatientLookupPort, guard: _Guard) -> None:
        self._inner = inner
        self._guard = guard

    # The decision and the consent filter are the gateway's own (patient_matching.py), made on the
    # consent state the PVS reports with each record; reading it again per patient would only ask
    # the same PVS the same question. A PVS that reports consent wrongly fails certification
    # (conformance case consent.denied.invisible).

    async def find_or_create_patient(self, ctx: CallContext, query: PatientQuery) -> tuple[Patient, MatchOutcome]:
        patient, outcome = await self._inner.find_or_create_patient(ctx, query)
        return self._guard.outward(ctx, patient), outcome

    async def list_shared_patients(self, ctx: CallContext, page: PageRequest) -> Page[Patient]:
        token = self._guard.scope.page_token_from_partner(ctx.partner_id, page.page_token)
        if token is None:
            raise InvalidArgument.field("page_token", "is not a token this gateway issued to you")
        result = await self._inner.list_shared_patients(ctx, PageRequest(page.page_size, token))
        return Page(
            [self._guard.outward(ctx, p) for p in result.items],
            self._guard.scope.page_token_to_partner(ctx.partner_id, result.next_page_token),
        )


class _GuardedConsent(ConsentPort):
    def __init__(self, inner: ConsentPort, guard: _Guard) -> None:
        self._inner = inner
        self._guard = guard

    async def get_consent(self, ctx: CallContext, patient_id: str) -> Consent:
        pvs_id = self._guard.inward(ctx, patient_id)
        try:
            consent = await self._inner.get_consent(ctx, pvs_id)
        except NotFound:
            raise _unknown_patient() from None
        if consent.state is ConsentState.DENIED:
            raise _unknown_patient()
        return dataclasses.replace(consent, patient_id=patient_id)

    async def record_consent(
        self, ctx: CallContext, patient_id: str, state: ConsentState, evidence: ConsentEvidence | None
    ) -> Consent:
        if state is not ConsentState.GRANTED:
            raise PermissionDenied(
                "a partner may record only the patient's grant from its own booking flow;"
                " denying or revoking consent is done by the practice"
            )
        if evidence is None:
            raise InvalidArgument.field("evidence", "is required when recording a grant")
        pvs_id = self._guard.inward(ctx, patient_id)
        if await self._guard.state(ctx, pvs_id) is ConsentState.DENIED:
            raise _unknown_patient()
        try:
            consent = await self._inner.record_consent(ctx, pvs_id, state, evidence)
        except NotFound:
            raise _unknown_patient() from None
        return dataclasses.replace(consent, patient_id=patient_id)


BookingFactory = Callable[[Adapter, PatientIds], BookingDesk]


def protect(adapter: Adapter, scope: PatientIdScope, booking: BookingFactory | None = None) -> Adapter:
    """The adapter as partners may reach it; with `booking`, writing goes through the booking desk."""
    guard = _Guard(scope, adapter.consent)
    protected = dataclasses.replace(
        adapter,
        patient_lookup=None if adapter.patient_lookup is None else _GuardedPatientLookup(adapter.patient_lookup, guard),
        consent=None if adapter.consent is None else _GuardedConsent(adapter.consent, guard),
    )
    if booking is None:
        return protected
    if not isinstance(adapter.reader, PracticeReader):
        return protected  # no calendar the gateway computes from: nothing to book
    desk = booking(adapter, PatientIds(guard.booking_patient, guard.outward_id))
    return dataclasses.replace(protected, writer=desk, reader=ClaimAwareReader(adapter.reader, desk))
