"""Consent: per patient and partner, open/granted/denied, and a denial hides the patient."""

from __future__ import annotations

from datetime import UTC, datetime

from otv_conformance.cases import Group, case, check
from otv_conformance.checks.patients import _query
from otv_conformance.session import Session
from otv_sdk.errors import NotFound, PermissionDenied
from otv_sdk.models import ConsentEvidence, ConsentMethod, ConsentState, ContactKind
from otv_sdk.ports import MatchOutcome, PageRequest, PatientQuery

G = Group.CONSENT


def _evidence() -> ConsentEvidence:
    return ConsentEvidence(datetime.now(UTC).replace(microsecond=0), ConsentMethod.ONLINE_FORM, "conformance-1")


@case("consent.states", "CO-1", G)
async def states(session: Session) -> None:
    """Open at first; a recorded grant is read back with its evidence; a partner cannot record a denial."""
    patient, _ = await session.lookup(_query(session, "p-lena"))
    consent = await session.a.get_consent(session.practice_id, patient.id)
    check(consent.state is ConsentState.OPEN, f"state {consent.state.name}, expected OPEN")
    evidence = _evidence()
    recorded = await session.a.record_consent(session.practice_id, patient.id, ConsentState.GRANTED, evidence)
    check(recorded.state is ConsentState.GRANTED, f"recorded state {recorded.state.name}")
    read = await session.a.get_consent(session.practice_id, patient.id)
    check(read.state is ConsentState.GRANTED, f"read back {read.state.name}, expected GRANTED")
    check(read.evidence == evidence, f"evidence read back {read.evidence}, expected {evidence}")
    try:
        await session.a.record_consent(session.practice_id, patient.id, ConsentState.DENIED, evidence)
    except PermissionDenied:
        return
    check(False, "a partner could record a denial")


def _jana(session: Session) -> PatientQuery:
    mobile = next(c for c in session.placed.patient("p-jana").contacts if c.kind is ContactKind.MOBILE)
    return _query(session, "p-jana", contacts=(mobile,))


@case("consent.denied.invisible", "CO-2", G)
async def denied_invisible(session: Session) -> None:
    """A patient who denied partner A is found by B (granted) but not by A, who gets a new patient."""
    other, outcome_b = await session.lookup(_jana(session), partner=session.b)
    check(outcome_b is MatchOutcome.MATCHED, f"partner B (granted): outcome {outcome_b.name}, expected MATCHED")
    check(not other.created_online, "partner B did not get the existing patient")
    patient, outcome = await session.lookup(_jana(session))
    check(outcome is MatchOutcome.CREATED, f"partner A: outcome {outcome.name}, expected CREATED (the match is hidden)")
    check(patient.created_online, "partner A got a patient that was not created online")


@case("consent.per_partner", "CO-3", G)
async def per_partner(session: Session) -> None:
    """Partner A's grant is not partner B's consent."""
    for_a, _ = await session.lookup(_query(session, "p-karl"))
    await session.a.record_consent(session.practice_id, for_a.id, ConsentState.GRANTED, _evidence())
    for_b, _ = await session.lookup(_query(session, "p-karl"), partner=session.b)
    consent = await session.b.get_consent(session.practice_id, for_b.id)
    check(consent.state is ConsentState.OPEN, f"partner B sees {consent.state.name}, expected OPEN")
    check(for_a.id != for_b.id, "both partners got the same patient id (ids must be partner-scoped)")


@case("consent.shared_list", "CO-4", G)
async def shared_list(session: Session) -> None:
    """ListSharedPatients lists the patients who granted A, and nobody else."""
    names: list[str] = []
    token = ""
    while True:
        page = await session.a.list_shared_patients(session.practice_id, PageRequest(100, token))
        names.extend(p.family_name for p in page.items)
        token = page.next_page_token
        if not token:
            break
    granted = {
        p.family_name
        for p in session.placed.scenario.patients
        if p.active and (session.partner_a, ConsentState.GRANTED) in p.consents
    }
    check(granted <= set(names), f"{len(granted - set(names))} patients who granted consent are not listed")
    # Denied, or never asked: never listed (namesakes of granted patients cannot be told apart by name).
    hidden = {session.placed.patient(p).family_name for p in ("p-jana", "p-otto", "p-ida", "p-paul")} - granted
    leaked = hidden & set(names)
    check(not leaked, f"{len(leaked)} patients listed without a grant")


@case("consent.denied.unreadable", "CO-2", G)
async def denied_unreadable(session: Session) -> None:
    """B's id for a patient who denied A is meaningless to A: NOT_FOUND."""
    other, _ = await session.lookup(_jana(session), partner=session.b)
    try:
        await session.a.get_consent(session.practice_id, other.id)
    except NotFound:
        return
    check(False, "partner A could read consent through partner B's id")


def _mia(session: Session, patient_id: str) -> PatientQuery:
    mobile = next(c for c in session.placed.patient(patient_id).contacts if c.kind is ContactKind.MOBILE)
    return _query(session, patient_id, contacts=(mobile,))


@case("consent.denied.namesake", "CO-2", G)
async def denied_namesake(session: Session) -> None:
    """Of two namesakes (one name, one birth date) the one who granted A is matched by her phone; the
    one who denied A stays hidden from A (a new patient, never the namesake who granted)."""
    granted_mobile = _mia(session, "p-mia-1").contacts[0].value
    denied_mobile = _mia(session, "p-mia-2").contacts[0].value
    one, outcome = await session.lookup(_mia(session, "p-mia-1"))
    check(
        outcome is MatchOutcome.MATCHED, f"namesake who granted A ({granted_mobile}): {outcome.name}, expected MATCHED"
    )
    check(
        any(c.value == granted_mobile for c in one.contacts) and all(c.value != denied_mobile for c in one.contacts),
        f"namesake who granted A came back with contacts {[c.value for c in one.contacts]}, expected {granted_mobile}",
    )
    two, outcome = await session.lookup(_mia(session, "p-mia-2"))
    check(
        outcome is MatchOutcome.CREATED,
        f"namesake who denied A ({denied_mobile}): outcome {outcome.name}, expected CREATED (the match is hidden)",
    )
    check(two.id != one.id, "the namesake who denied A was resolved to the one who granted")
