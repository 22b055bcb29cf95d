"""For random namesakes and consent states: a denied patient is never returned, linked or touched;
an answer shaped by a denial is indistinguishable from a genuine "not found"; and a denial never
redirects a booking to another patient.

Why not "the same answer as if the denied patient did not exist at all": with two namesakes, one
denied, and a booking without contacts, the booking may well be the denied patient's. Matching the
other namesake (what a world without the denied patient would do) would link it to the wrong
person. The issue therefore disambiguates over all candidates first and removes denied patients
afterwards; these properties are what that rule guarantees.
"""

from __future__ import annotations

import asyncio
from datetime import date

import grpc
import pytest
from conftest import SECRET
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.consent_records import RecordedConsent
from gateway.patient_ids import PatientIdScope
from gateway.patient_matching import PatientMatcher
from gateway.privacy import protect
from otv_sdk.adapter_server import serve_adapters
from otv_sdk.models import ConsentState, Contact, ContactKind, Patient
from otv_sdk.ports import Adapter, CallContext, ConsentDataPort, MatchOutcome, PatientDataPort, PatientQuery
from otv_sdk.practice_data_client import PracticeDataClient, RemoteConsentData, RemotePatientData
from otv_sdk.reference import ADAPTER_INFO, create_adapter
from otv_sdk.reference.patients import ReferencePatients, ReferencePractice

BIRTH = date(1975, 3, 4)
PHONES = ["0151 11111111", "0151 22222222", "030 1234567"]
EMAILS = ["a@x.de", "b@x.de"]
SCOPE = PatientIdScope(bytes.fromhex(SECRET))
CTX = CallContext(partner_id="alpha", request_id=None)

contacts = st.lists(
    st.one_of(
        st.sampled_from(PHONES).map(lambda v: Contact(ContactKind.MOBILE, v)),
        st.sampled_from(EMAILS).map(lambda v: Contact(ContactKind.EMAIL, v)),
    ),
    max_size=2,
    unique=True,
)
people = st.lists(
    st.tuples(
        st.sampled_from(["Max", "Max", "Moritz", "Max Otto"]),
        contacts,
        st.booleans(),  # active
        st.sampled_from([ConsentState.OPEN, ConsentState.GRANTED, ConsentState.DENIED]),
    ),
    min_size=1,
    max_size=4,
)


def _world(
    patients: list[tuple[str, list[Contact], bool, ConsentState]], skip: int | None
) -> tuple[ReferencePatients, ReferencePractice]:
    adapter = create_adapter("demo", {"database": ":memory:", "demo": False})
    lookup = adapter.patients
    assert isinstance(lookup, ReferencePatients)
    for index, (name, items, active, state) in enumerate(patients):
        if index == skip:
            continue
        lookup.practice.add_patient(
            name, "Meier", BIRTH.isoformat(), tuple(items), active=active, patient_id=f"p{index}"
        )
        lookup.practice.set_consent(f"p{index}", "alpha", state)
    return lookup, lookup.practice


async def _decide(
    patients: PatientDataPort, consents: ConsentDataPort, query: PatientQuery
) -> tuple[Patient, MatchOutcome]:
    """The gateway's decision (PatientMatcher) over the PVS's data, behind the gateway's privacy rules."""
    served = Adapter(
        info=ADAPTER_INFO, patient_lookup=PatientMatcher("demo", patients), consent=RecordedConsent(consents)
    )
    lookup = protect(served, SCOPE).patient_lookup
    assert lookup is not None
    return await lookup.find_or_create_patient(CTX, query)


async def _decide_remotely(pvs: ReferencePatients, query: PatientQuery) -> tuple[Patient, MatchOutcome]:
    """The same, with the PVS's data reached over PracticeDataService, as for a remote practice."""
    server = await serve_adapters({"demo": Adapter(info=ADAPTER_INFO, patients=pvs, consents=pvs)})
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            client = PracticeDataClient(channel, "demo")
            return await _decide(RemotePatientData(client), RemoteConsentData(client), query)
    finally:
        await server.stop(0)


def _ask(
    pvs: ReferencePatients, query: PatientQuery, transport: str
) -> tuple[str | None, MatchOutcome, tuple[str, str, tuple[Contact, ...], bool]]:
    if transport == "remote":
        patient, outcome = asyncio.run(_decide_remotely(pvs, query))
    else:
        patient, outcome = asyncio.run(_decide(pvs, pvs, query))
    pvs_id = SCOPE.from_partner("alpha", patient.id)
    shape = (patient.given_name, patient.family_name, patient.contacts, patient.created_online)
    return pvs_id, outcome, shape


@pytest.mark.parametrize("transport", ["in_process", "remote"])
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(people, st.data())
def test_denied_is_never_linked_and_looks_exactly_like_not_found(
    transport: str, patients: list[tuple[str, list[Contact], bool, ConsentState]], data: st.DataObject
) -> None:
    denied = data.draw(st.integers(0, len(patients) - 1))
    patients[denied] = (*patients[denied][:3], ConsentState.DENIED)
    query = PatientQuery(data.draw(st.sampled_from(["Max", "Moritz"])), "Meier", BIRTH, tuple(data.draw(contacts)))

    world, practice = _world(patients, skip=None)
    before = {f"p{i}": practice.patient(f"p{i}") for i in range(len(patients))}
    pvs_id, outcome, shape = _ask(world, query, transport)
    # 1. Never a patient who denied; nobody who denied is touched (record, note, consent history).
    for index, (_, _, _, state) in enumerate(patients):
        if state is ConsentState.DENIED:
            assert pvs_id != f"p{index}"
            assert practice.patient(f"p{index}") == before[f"p{index}"]
            assert practice.consent_events(f"p{index}")[-1][2] == "practice"

    # 2. A "created" answer looks exactly like the answer where nobody matches at all.
    if outcome is MatchOutcome.CREATED:
        nobody, _ = _world([], skip=None)
        _, nobody_outcome, nobody_shape = _ask(nobody, query, transport)
        assert (outcome, shape) == (nobody_outcome, nobody_shape)

    # 3. Consent never redirects: with every consent open, the same patient (or none) is chosen.
    all_open = [(*p[:3], ConsentState.OPEN) for p in patients]
    blind, _ = _world(all_open, skip=None)
    blind_id, blind_outcome, _ = _ask(blind, query, transport)
    if outcome is MatchOutcome.MATCHED:
        assert (blind_outcome, blind_id) == (MatchOutcome.MATCHED, pvs_id)
    elif blind_outcome is MatchOutcome.MATCHED:
        assert blind_id is not None
        assert patients[int(blind_id[1:])][3] is ConsentState.DENIED
