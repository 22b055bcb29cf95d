"""Patients: find-or-create by the seeds' rule, without duplicates."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date

from otv_conformance.cases import Group, case, check
from otv_conformance.session import Session
from otv_sdk.models import Contact, ContactKind
from otv_sdk.ports import MatchOutcome, PatientQuery

G = Group.PATIENTS


def _query(session: Session, patient_id: str, **changes: object) -> PatientQuery:
    p = session.placed.patient(patient_id)
    birth = p.birth_date.full() if p.birth_date else None
    fields: dict[str, object] = {
        "given_name": p.given_name,
        "family_name": p.family_name,
        "birth_date": birth or date(1970, 3, 15),
        "contacts": (),
    }
    fields.update(changes)
    return PatientQuery(**fields)  # type: ignore[arg-type]


def _contact(session: Session, patient_id: str, kind: ContactKind) -> Contact:
    return next(c for c in session.placed.patient(patient_id).contacts if c.kind is kind)


@case("patients.match.existing", "PA-1", G)
async def match_existing(session: Session) -> None:
    """An existing patient (Stammpatient) is matched by name and birth date, twice to the same id."""
    first, outcome = await session.lookup(_query(session, "p-erika"))
    check(outcome is MatchOutcome.MATCHED, f"outcome {outcome.name}, expected MATCHED")
    check(not first.created_online, "the existing patient came back as created online")
    again, outcome = await session.lookup(_query(session, "p-erika"))
    check(outcome is MatchOutcome.MATCHED and again.id == first.id, "a second lookup gave another patient")


@case("patients.match.normalisation", "PA-2", G)
async def match_normalised(session: Session) -> None:
    """'JUERGEN  mueller-x' finds 'Jürgen Müller-X': case, umlauts, spaces and hyphens do not matter."""
    exact, outcome = await session.lookup(_query(session, "p-juergen"))
    check(outcome is MatchOutcome.MATCHED, f"the exact name: outcome {outcome.name}, expected MATCHED")
    p = session.placed.patient("p-juergen")
    variant = _query(
        session,
        "p-juergen",
        given_name="  JUERGEN ",
        family_name=p.family_name.replace("Müller", "mueller").replace("-", " - ").upper(),
    )
    found, outcome = await session.lookup(variant)
    check(outcome is MatchOutcome.MATCHED, f"the variant spelling: outcome {outcome.name}, expected MATCHED")
    check(found.id == exact.id, "the variant spelling found another patient")


@case("patients.match.namesakes", "PA-3", G)
async def match_namesakes(session: Session) -> None:
    """Two patients with one name and birth date: the phone number decides which one is meant."""
    one, outcome_one = await session.lookup(
        _query(session, "p-max-1", contacts=(_contact(session, "p-max-1", ContactKind.MOBILE),))
    )
    two, outcome_two = await session.lookup(
        _query(session, "p-max-2", contacts=(_contact(session, "p-max-2", ContactKind.MOBILE),))
    )
    check(outcome_one is MatchOutcome.MATCHED, f"namesake 1: outcome {outcome_one.name}, expected MATCHED")
    check(outcome_two is MatchOutcome.MATCHED, f"namesake 2: outcome {outcome_two.name}, expected MATCHED")
    check(one.id != two.id, "both namesakes resolved to the same patient")
    email = _contact(session, "p-max-1", ContactKind.EMAIL).value
    check(any(c.value == email for c in one.contacts), "namesake 1 (consent granted) came back without its own e-mail")


@case("patients.match.birth_date_required", "PA-4", G)
async def match_needs_birth_date(session: Session) -> None:
    """Patients on file without a birth date, or with only year and month, are not matched."""
    for patient_id in ("p-otto", "p-ida"):
        patient, outcome = await session.lookup(_query(session, patient_id))
        check(outcome is MatchOutcome.CREATED, f"{patient_id}: outcome {outcome.name}, expected CREATED")
        check(patient.created_online, f"{patient_id}: the new patient is not marked as created online")


@case("patients.match.inactive", "PA-5", G)
async def match_inactive(session: Session) -> None:
    """An inactive patient record is not matched; a new patient is created."""
    _, outcome = await session.lookup(_query(session, "p-paul"))
    check(outcome is MatchOutcome.CREATED, f"outcome {outcome.name}, expected CREATED")


@case("patients.create.no_duplicate", "PA-6", G)
async def create_once(session: Session) -> None:
    """A new person is created once; a later lookup (new request id) finds that patient."""
    person = session.new_person()
    created, outcome = await session.lookup(person)
    check(outcome is MatchOutcome.CREATED, f"first lookup: outcome {outcome.name}, expected CREATED")
    found, outcome = await session.lookup(person)
    check(outcome is MatchOutcome.MATCHED and found.id == created.id, "the second lookup did not find the new patient")
    retry, outcome = await session.lookup(person, request_id=(rid := str(uuid.uuid4())))
    again, outcome_again = await session.lookup(person, request_id=rid)
    check(retry.id == again.id == created.id and outcome_again is outcome, "a retried request answered differently")


@case("patients.create.concurrent", "PA-6", G)
async def create_concurrently(session: Session) -> None:
    """Eight concurrent lookups of one new person create exactly one patient."""
    person = session.new_person("Gleichzeitig")
    results = await asyncio.gather(*(session.lookup(person) for _ in range(8)))
    ids = {patient.id for patient, _ in results}
    created = sum(1 for _, outcome in results if outcome is MatchOutcome.CREATED)
    check(len(ids) == 1, f"{len(ids)} different patients for one person")
    check(created == 1, f"{created} lookups say they created the patient, expected 1")
