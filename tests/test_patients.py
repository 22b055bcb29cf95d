"""Patient lookup and consent behaviour beyond single matches: notes, retries, races, consent, ids."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import fake_adapters
import pytest
from conftest import SECRET, gateway_config, reference_settings
from patient_env import PatientEnv, as_partner, header_identity, patient_env

from gateway.app import Gateway
from gateway.patient_ids import PatientIdScope
from otv_sdk.client import PartnerClient
from otv_sdk.errors import InvalidArgument, NotFound, PermissionDenied
from otv_sdk.models import ConsentActor, ConsentEvidence, ConsentMethod, ConsentState, Contact, ContactKind
from otv_sdk.ports import MatchOutcome, PageRequest, PatientQuery
from otv_sdk.reference import create_adapter
from otv_sdk.reference.patients import ReferencePatients

BIRTH = date(1980, 1, 2)
EVIDENCE = ConsentEvidence(datetime(2026, 11, 1, 9, 30, tzinfo=UTC), ConsentMethod.ONLINE_FORM, "2026-01")


@pytest.fixture(params=["in_process", "remote"])
async def env(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    async with patient_env(str(request.param)) as environment:
        yield environment


def query(given: str = "Erika", family: str = "Mustermann", *contacts: Contact) -> PatientQuery:
    return PatientQuery(given, family, BIRTH, contacts)


async def find(env: PatientEnv, q: PatientQuery, partner: str = "alpha", request_id: str | None = None):  # type: ignore[no-untyped-def]
    return await env.client.find_or_create_patient("demo", q, request_id=request_id, metadata=as_partner(partner))


async def test_extra_contacts_go_into_a_note_never_over_stored_values(env: PatientEnv) -> None:
    stored = (Contact(ContactKind.MOBILE, "0151 11111111"),)
    pid = env.practice.add_patient("Erika", "Mustermann", BIRTH.isoformat(), stored)
    booking = query(
        "Erika", "Mustermann", Contact(ContactKind.MOBILE, "0170 2222222"), Contact(ContactKind.EMAIL, "e@x.de")
    )
    _, outcome = await find(env, booking)
    assert outcome is MatchOutcome.MATCHED
    record = env.practice.patient(pid)
    assert record.contacts == stored
    assert "+491702222222" in record.note
    assert "e@x.de" in record.note


async def test_matched_patient_is_returned_without_stored_contacts_until_consent_is_granted(env: PatientEnv) -> None:
    pid = env.practice.add_patient(
        "Erika", "Mustermann", BIRTH.isoformat(), (Contact(ContactKind.EMAIL, "erika@x.de"),)
    )
    patient, _ = await find(env, query())
    assert patient.contacts == ()
    assert patient.given_name == "Erika"
    env.practice.set_consent(pid, "alpha", ConsentState.GRANTED)
    patient, _ = await find(env, query())
    assert patient.contacts == (Contact(ContactKind.EMAIL, "erika@x.de"),)


async def test_a_new_patient_is_a_prospect_with_an_open_consent_record(env: PatientEnv) -> None:
    patient, outcome = await find(env, query("Neu", "Patientin", Contact(ContactKind.MOBILE, "+49 151 55555555")))
    assert outcome is MatchOutcome.CREATED
    assert patient.created_online
    assert patient.contacts == (Contact(ContactKind.MOBILE, "+4915155555555"),)
    pvs_id = env.pvs_id("alpha", patient.id)
    assert pvs_id is not None
    record = env.practice.patient(pvs_id)
    assert "Interessent" in record.note
    consent = await env.client.get_consent("demo", patient.id, metadata=as_partner("alpha"))
    assert consent.state is ConsentState.OPEN


async def test_retry_with_the_same_request_id_returns_the_first_answer(env: PatientEnv) -> None:
    count = env.practice.count_patients()
    first, _ = await find(env, query("Neu", "Retry"), request_id="req-1")
    again, outcome = await find(env, query("Neu", "Retry"), request_id="req-1")
    assert again.id == first.id
    assert outcome is MatchOutcome.CREATED
    assert env.practice.count_patients() == count + 1
    with pytest.raises(InvalidArgument) as caught:
        await find(env, query("Other", "Person"), request_id="req-1")
    assert [v.field for v in caught.value.violations] == ["request_id"]


async def test_identical_requests_at_the_same_time_create_one_patient(env: PatientEnv) -> None:
    count = env.practice.count_patients()
    results = await asyncio.gather(*(find(env, query("Zeit", "Gleich")) for _ in range(12)))
    assert len({patient.id for patient, _ in results}) == 1
    assert sorted(o.value for _, o in results).count("created") == 1
    assert env.practice.count_patients() == count + 1


async def test_partner_scoped_ids_are_stable_and_useless_to_other_partners(env: PatientEnv) -> None:
    pid = env.practice.add_patient("Erika", "Mustermann", BIRTH.isoformat())
    alpha, _ = await find(env, query(), "alpha")
    alpha_again, _ = await find(env, query(), "alpha")
    beta, _ = await find(env, query(), "beta")
    assert alpha.id == alpha_again.id
    assert alpha.id != beta.id
    assert pid not in (alpha.id, beta.id)
    with pytest.raises(NotFound) as foreign:
        await env.client.get_consent("demo", alpha.id, metadata=as_partner("beta"))
    with pytest.raises(NotFound) as made_up:
        await env.client.get_consent("demo", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", metadata=as_partner("beta"))
    assert foreign.value.message == made_up.value.message
    assert foreign.value.violations == made_up.value.violations


async def test_partner_may_record_a_grant_with_evidence_and_it_is_audited(env: PatientEnv) -> None:
    patient, _ = await find(env, query())
    consent = await env.client.record_consent(
        "demo", patient.id, ConsentState.GRANTED, EVIDENCE, metadata=as_partner("alpha")
    )
    assert consent.state is ConsentState.GRANTED
    assert consent.evidence == EVIDENCE
    assert consent.set_by is ConsentActor.PARTNER
    assert consent.patient_id == patient.id
    pvs_id = env.pvs_id("alpha", patient.id)
    assert pvs_id is not None
    assert env.practice.consent_events(pvs_id)[-1] == ("alpha", "granted", "partner")
    # Other partners' consent is separate.
    beta, _ = await find(env, query(), "beta")
    assert (await env.client.get_consent("demo", beta.id, metadata=as_partner("beta"))).state is ConsentState.OPEN


@pytest.mark.parametrize("state", [ConsentState.DENIED, ConsentState.OPEN])
async def test_only_the_practice_may_deny_or_revoke(env: PatientEnv, state: ConsentState) -> None:
    patient, _ = await find(env, query())
    with pytest.raises(PermissionDenied):
        await env.client.record_consent("demo", patient.id, state, EVIDENCE, metadata=as_partner("alpha"))


async def test_a_grant_needs_evidence(env: PatientEnv) -> None:
    patient, _ = await find(env, query())
    with pytest.raises(InvalidArgument) as caught:
        await env.client.record_consent("demo", patient.id, ConsentState.GRANTED, None, metadata=as_partner("alpha"))
    assert [v.field for v in caught.value.violations] == ["evidence"]


async def test_after_the_practice_records_a_denial_the_patient_is_invisible(env: PatientEnv) -> None:
    patient, _ = await find(env, query())
    pvs_id = env.pvs_id("alpha", patient.id)
    assert pvs_id is not None
    env.practice.set_consent(pvs_id, "alpha", ConsentState.DENIED)
    with pytest.raises(NotFound):
        await env.client.get_consent("demo", patient.id, metadata=as_partner("alpha"))
    with pytest.raises(NotFound):
        await env.client.record_consent(
            "demo", patient.id, ConsentState.GRANTED, EVIDENCE, metadata=as_partner("alpha")
        )
    again, outcome = await find(env, query())
    assert outcome is MatchOutcome.CREATED
    assert env.pvs_id("alpha", again.id) != pvs_id
    assert env.practice.consent_events(pvs_id)[-1] == ("alpha", "denied", "practice")


async def test_shared_patients_are_those_who_granted_paged(env: PatientEnv) -> None:
    granted = []
    for index in range(5):
        pid = env.practice.add_patient(f"Geteilt{index}", "Patient", BIRTH.isoformat())
        env.practice.set_consent(pid, "alpha", ConsentState.GRANTED)
        granted.append(pid)
    denied = env.practice.add_patient("Nein", "Patient", BIRTH.isoformat())
    env.practice.set_consent(denied, "alpha", ConsentState.DENIED)
    env.practice.add_patient("Offen", "Patient", BIRTH.isoformat())
    other = env.practice.add_patient("Beta", "Patient", BIRTH.isoformat())
    env.practice.set_consent(other, "beta", ConsentState.GRANTED)
    seen: list[str] = []
    token = ""
    for _ in range(10):
        page = await env.client.list_shared_patients("demo", PageRequest(2, token), metadata=as_partner("alpha"))
        seen += [env.pvs_id("alpha", p.id) or "?" for p in page.items]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(granted)
    first = await env.client.list_shared_patients("demo", PageRequest(2), metadata=as_partner("alpha"))
    with pytest.raises(InvalidArgument) as caught:
        await env.client.list_shared_patients(
            "demo", PageRequest(2, first.next_page_token), metadata=as_partner("beta")
        )
    assert [v.field for v in caught.value.violations] == ["page_token"]


async def test_gateway_lists_only_granted_patients_whatever_the_pvs_lists() -> None:
    adapter = create_adapter("demo", reference_settings())
    lookup = adapter.patients
    assert isinstance(lookup, ReferencePatients)
    denied = lookup.practice.add_patient("Aaron", "Abel", BIRTH.isoformat(), patient_id="a-denied")
    lookup.practice.set_consent(denied, "alpha", ConsentState.DENIED)
    granted = lookup.practice.add_patient("Berta", "Abel", BIRTH.isoformat(), patient_id="a-granted")
    lookup.practice.set_consent(granted, "alpha", ConsentState.GRANTED)
    fake_adapters.SHARED["demo"] = adapter
    gateway = await Gateway.start(
        gateway_config({"demo": {"adapter": {"plugin": "fake_adapters:create_leaky"}}}), identify=header_identity
    )
    try:
        async with PartnerClient.connect(gateway.address) as client:
            shared = await client.list_shared_patients("demo", PageRequest(100), metadata=as_partner("alpha"))
            scope = PatientIdScope(bytes.fromhex(SECRET))
            assert [scope.from_partner("alpha", p.id) for p in shared.items] == [granted]
    finally:
        await gateway.stop(0)
        fake_adapters.SHARED.pop("demo", None)
