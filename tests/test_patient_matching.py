"""Find-or-create, case by case, against the reference adapter through a real gateway (both transports).

Each case sets up the practice's patients, sends one FindOrCreatePatient as partner "alpha" and
states the outcome: the labelled existing patient, a new patient, or INVALID_ARGUMENT naming a field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import grpc
import pytest
from patient_env import as_partner, patient_env
from test_validation import violation

from otv.v1 import patient_lookup_service_pb2, patient_lookup_service_pb2_grpc, patient_pb2, time_pb2
from otv_sdk.models import ConsentState, Contact, ContactKind

PHONE, MOBILE, EMAIL = ContactKind.PHONE, ContactKind.MOBILE, ContactKind.EMAIL
PARTNER = "alpha"


@dataclass
class Stored:
    label: str
    given: str
    family: str
    birth: str | None = "1970-05-17"
    contacts: tuple[tuple[ContactKind, str], ...] = ()
    active: bool = True
    consents: dict[str, ConsentState] = field(default_factory=dict)


@dataclass
class Case:
    id: str
    stored: list[Stored]
    given: str
    family: str
    expect: str  # "matched:<label>", "created" or "invalid:<field>"
    birth: tuple[int, int, int] | None = (1970, 5, 17)
    contacts: tuple[tuple[int, str], ...] = ()  # proto ContactKind number, value


P, M, E = patient_pb2.CONTACT_KIND_PHONE, patient_pb2.CONTACT_KIND_MOBILE, patient_pb2.CONTACT_KIND_EMAIL
ERIKA = Stored("erika", "Erika", "Mustermann")
DENIED = {PARTNER: ConsentState.DENIED}
TWINS = [
    Stored("a", "Max", "Meier", contacts=((MOBILE, "0151 11111111"),)),
    Stored("b", "Max", "Meier", contacts=((MOBILE, "0151 22222222"), (EMAIL, "max.b@example.org"))),
]

CASES = [
    # Normalisation, rule by rule
    Case("exact", [ERIKA], "Erika", "Mustermann", "matched:erika"),
    Case("case-folding", [ERIKA], "ERIKA", "MUSTERMANN", "matched:erika"),
    Case("umlaut-to-ae", [Stored("j", "Jürgen", "Müller")], "Juergen", "Mueller", "matched:j"),
    Case("ae-to-umlaut", [Stored("j", "Juergen", "Mueller")], "Jürgen", "Müller", "matched:j"),
    Case("nfc-composition", [Stored("j", "Jürgen", "Müller")], "Ju\u0308rgen", "Mu\u0308ller", "matched:j"),
    Case("sharp-s", [Stored("w", "Gert", "Weiß")], "Gert", "WEISS", "matched:w"),
    Case("capital-sharp-s", [Stored("w", "Gert", "Weiss")], "Gert", "WEIẞ", "matched:w"),
    Case("dotless-i", [Stored("y", "Ömer", "Yılmaz")], "Oemer", "Yilmaz", "matched:y"),
    Case("o-slash", [Stored("s", "Søren", "Jørgensen")], "Soeren", "Joergensen", "matched:s"),
    Case("l-stroke", [Stored("l", "Łukasz", "Wałęsa")], "Lukasz", "Walesa", "matched:l"),
    Case("accents", [Stored("g", "José", "García")], "Jose", "Garcia", "matched:g"),
    Case("white-space", [ERIKA], "  Erika ", "\u00a0Mustermann\t ", "matched:erika"),
    Case("repeated-space", [Stored("d", "Anna Maria", "de la Cruz")], "Anna  Maria", "de  la   Cruz", "matched:d"),
    Case("en-dash", [Stored("m", "Jürgen", "Müller-Lüdenscheidt")], "Jürgen", "Müller – Lüdenscheidt", "matched:m"),
    Case(
        "hyphen-or-space", [Stored("m", "Jürgen", "Müller-Lüdenscheidt")], "Jürgen", "Müller Lüdenscheidt", "matched:m"
    ),
    Case("double-name-half", [Stored("m", "Jürgen", "Müller-Lüdenscheidt")], "Jürgen", "Müller", "created"),
    Case("particle-dropped", [Stored("v", "Sophie", "von Arnim")], "Sophie", "Arnim", "matched:v"),
    Case("particle-added", [Stored("v", "Sophie", "Arnim")], "Sophie", "von Arnim", "matched:v"),
    Case("particles-several", [Stored("v", "Jan", "van der Berg")], "Jan", "Berg", "matched:v"),
    Case("particle-only-surname", [Stored("v", "Jan", "Van")], "Jan", "van", "matched:v"),
    Case("title-in-given", [Stored("t", "Anna", "Berg")], "Dr. Anna", "Berg", "matched:t"),
    Case("titles-in-family", [Stored("t", "Anna", "Berg")], "Anna", "Prof. Dr. med. Berg", "matched:t"),
    Case("name-addition", [Stored("f", "Karl", "Freiherr vom Stein")], "Karl", "Stein", "matched:f"),
    Case("surname-graf", [Stored("g", "Karl", "Graf")], "Karl", "GRAF", "matched:g"),
    Case("first-of-two-given", [Stored("a", "Anna Maria", "Schmidt")], "Anna", "Schmidt", "matched:a"),
    Case("two-given-hyphenated", [Stored("a", "Anna Maria", "Schmidt")], "Anna-Maria", "Schmidt", "matched:a"),
    Case("second-given-only", [Stored("a", "Anna Maria", "Schmidt")], "Maria", "Schmidt", "created"),
    Case("more-given-than-stored", [Stored("a", "Anna", "Schmidt")], "Anna Maria", "Schmidt", "matched:a"),
    # Birth dates
    Case("birth-date-off-by-a-day", [ERIKA], "Erika", "Mustermann", "created", birth=(1970, 5, 18)),
    Case(
        "stored-without-birth-date", [Stored("x", "Erika", "Mustermann", birth=None)], "Erika", "Mustermann", "created"
    ),
    Case(
        "stored-year-and-month", [Stored("x", "Erika", "Mustermann", birth="1970-05")], "Erika", "Mustermann", "created"
    ),
    Case("impossible-date", [ERIKA], "Erika", "Mustermann", "invalid:birth_date.day", birth=(1970, 2, 30)),
    Case("future-date", [ERIKA], "Erika", "Mustermann", "invalid:birth_date", birth=(2999, 1, 1)),
    Case("missing-birth-date", [ERIKA], "Erika", "Mustermann", "invalid:birth_date", birth=None),
    # Namesakes and contacts
    Case("namesakes-phone-decides", TWINS, "Max", "Meier", "matched:b", contacts=((M, "+49 151 22222222"),)),
    Case("namesakes-email-decides", TWINS, "Max", "Meier", "matched:b", contacts=((E, "  MAX.B@Example.org "),)),
    Case("namesakes-no-contacts", TWINS, "Max", "Meier", "created"),
    Case("namesakes-unknown-contacts", TWINS, "Max", "Meier", "created", contacts=((M, "0151 33333333"),)),
    Case(
        "shared-family-phone",
        [
            Stored("a", "Max", "Meier", contacts=((PHONE, "030 1234567"),)),
            Stored("b", "Max", "Meier", contacts=((PHONE, "+49 30 1234567"),)),
        ],
        "Max",
        "Meier",
        "created",
        contacts=((P, "030 1234567"),),
    ),
    Case(
        "twins-by-given-name",
        [Stored("lena", "Lena", "Kaya"), Stored("lisa", "Lisa", "Kaya")],
        "Lena",
        "Kaya",
        "matched:lena",
    ),
    Case(
        "one-candidate-other-contacts", [ERIKA], "Erika", "Mustermann", "matched:erika", contacts=((M, "0170 9999999"),)
    ),
    # Consent: a denied patient looks exactly like an absent one
    Case("denied-single", [Stored("d", "Erika", "Mustermann", consents=DENIED)], "Erika", "Mustermann", "created"),
    Case(
        "namesakes-contacts-pick-denied",
        [TWINS[0], Stored("b", "Max", "Meier", contacts=((MOBILE, "0151 22222222"),), consents=DENIED)],
        "Max",
        "Meier",
        "created",
        contacts=((M, "0151 22222222"),),
    ),
    Case(
        "namesakes-contacts-pick-allowed",
        [TWINS[0], Stored("b", "Max", "Meier", contacts=((MOBILE, "0151 22222222"),), consents=DENIED)],
        "Max",
        "Meier",
        "matched:a",
        contacts=((M, "0151 11111111"),),
    ),
    Case(
        "denied-for-another-partner",
        [Stored("o", "Erika", "Mustermann", consents={"beta": ConsentState.DENIED})],
        "Erika",
        "Mustermann",
        "matched:o",
    ),
    Case(
        "granted",
        [Stored("g", "Erika", "Mustermann", consents={PARTNER: ConsentState.GRANTED})],
        "Erika",
        "Mustermann",
        "matched:g",
    ),
    # Only active patients are candidates
    Case("inactive", [Stored("i", "Erika", "Mustermann", active=False)], "Erika", "Mustermann", "created"),
    Case(
        "inactive-namesake",
        [Stored("i", "Erika", "Mustermann", active=False), Stored("a", "Erika", "Mustermann")],
        "Erika",
        "Mustermann",
        "matched:a",
    ),
    # Invalid input
    Case(
        "ambiguous-phone", [ERIKA], "Erika", "Mustermann", "invalid:contacts[0].value", contacts=((M, "4915112345678"),)
    ),
    Case(
        "not-an-email",
        [ERIKA],
        "Erika",
        "Mustermann",
        "invalid:contacts[0].value",
        contacts=((E, "erika.example.org"),),
    ),
    Case(
        "contact-kind-missing",
        [ERIKA],
        "Erika",
        "Mustermann",
        "invalid:contacts[0].kind",
        contacts=((0, "0151 11111111"),),
    ),
    Case("empty-given-name", [ERIKA], "  ", "Mustermann", "invalid:given_name"),
    Case("given-name-only-a-title", [ERIKA], "Dr.", "Mustermann", "invalid:given_name"),
]


def test_corpus_is_large_enough_and_ids_unique() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.fixture(params=["in_process", "remote"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_find_or_create(case: Case, transport: str) -> None:
    async with patient_env(transport) as env:
        ids: dict[str, str] = {}
        for stored in case.stored:
            contacts = tuple(Contact(kind, value) for kind, value in stored.contacts)
            ids[stored.label] = env.practice.add_patient(
                stored.given, stored.family, stored.birth, contacts, active=stored.active
            )
            for partner, state in stored.consents.items():
                env.practice.set_consent(ids[stored.label], partner, state)
        before = {label: env.practice.patient(pid) for label, pid in ids.items()}
        count = env.practice.count_patients()
        request = patient_lookup_service_pb2.FindOrCreatePatientRequest(
            parent="practices/demo",
            request_id=f"case-{case.id}",
            given_name=case.given,
            family_name=case.family,
            birth_date=None
            if case.birth is None
            else time_pb2.Date(year=case.birth[0], month=case.birth[1], day=case.birth[2]),
            contacts=[patient_pb2.Contact(kind=k, value=v) for k, v in case.contacts],  # type: ignore[arg-type]
        )
        async with grpc.aio.insecure_channel(env.address) as channel:
            stub = patient_lookup_service_pb2_grpc.PatientLookupServiceStub(channel)
            call = stub.FindOrCreatePatient(request, metadata=as_partner(PARTNER), timeout=10)
            if case.expect.startswith("invalid:"):
                assert await violation(call, grpc.StatusCode.INVALID_ARGUMENT) == [case.expect.removeprefix("invalid:")]
                assert env.practice.count_patients() == count
                return
            response = await call
        scoped = response.patient.name.rsplit("/", 1)[-1]
        pvs_id = env.pvs_id(PARTNER, scoped)
        assert pvs_id is not None
        assert scoped != pvs_id
        if case.expect == "created":
            assert response.outcome == patient_lookup_service_pb2.MATCH_OUTCOME_CREATED
            assert pvs_id not in ids.values()
            assert env.practice.count_patients() == count + 1
            record = env.practice.patient(pvs_id)
            assert record.created_online_by == PARTNER
            assert record.birth_date == date(*case.birth).isoformat()  # type: ignore[misc]
        else:
            assert response.outcome == patient_lookup_service_pb2.MATCH_OUTCOME_MATCHED
            assert pvs_id == ids[case.expect.removeprefix("matched:")]
            assert env.practice.count_patients() == count
        # Nobody who denied consent was linked or touched.
        for label, stored in before.items():
            if stored_denied(case, label):
                assert env.practice.patient(ids[label]) == stored
                assert pvs_id != ids[label]


def stored_denied(case: Case, label: str) -> bool:
    return any(s.label == label and s.consents.get(PARTNER) is ConsentState.DENIED for s in case.stored)
