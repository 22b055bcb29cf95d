"""The matcher reads a contact value once per spelling: a candidate's contact typed exactly as the
booking's takes the value the booking's normalised to, any other spelling is parsed on its own."""

from __future__ import annotations

from datetime import date

import pytest

from otv_rules import contact_values, matching
from otv_sdk.models import ConsentState, Contact, ContactKind
from otv_sdk.ports import PatientQuery

BIRTH = date(1970, 5, 17)


def _candidate(patient_id: str, *contacts: Contact) -> matching.Candidate:
    return matching.Candidate(patient_id, "Max", "Meier", BIRTH, contacts, True, ConsentState.OPEN)


@pytest.fixture
def phone_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []

    def counted(value: str) -> str:
        reads.append(value)
        return contact_values.normalize_phone(value)

    monkeypatch.setattr(matching, "normalize_phone", counted)
    return reads


def test_a_contact_spelled_as_the_booking_is_not_parsed_again(phone_reads: list[str]) -> None:
    query = matching.normalize_query(
        PatientQuery("Max", "Meier", BIRTH, (Contact(ContactKind.MOBILE, "0151 22222222"),))
    )
    twins = [
        _candidate("a", Contact(ContactKind.MOBILE, "0151 11111111")),
        _candidate("b", Contact(ContactKind.PHONE, "0151 22222222"), Contact(ContactKind.EMAIL, "b@example.org")),
    ]

    chosen = matching.decide(query, twins)

    assert chosen is not None
    assert chosen.patient_id == "b"
    assert matching.new_contacts(query, chosen.contacts) == ()
    # The booking's number once, twin a's once; twin b's (spelled alike, read twice) never.
    assert phone_reads == ["0151 22222222", "0151 11111111"]


def test_another_spelling_of_the_same_number_is_parsed_and_compares_equal(phone_reads: list[str]) -> None:
    query = matching.normalize_query(
        PatientQuery("Max", "Meier", BIRTH, (Contact(ContactKind.MOBILE, "+49 151 22222222"),))
    )
    record = (Contact(ContactKind.MOBILE, "0151/22222222"),)

    assert matching.new_contacts(query, record) == ()
    assert phone_reads == ["+49 151 22222222", "0151/22222222"]


def test_an_email_spelled_like_a_booked_phone_is_read_as_an_email(phone_reads: list[str]) -> None:
    query = matching.normalize_query(
        PatientQuery("Max", "Meier", BIRTH, (Contact(ContactKind.MOBILE, "0151 22222222"),))
    )
    # Not a readable address: ignored for comparison, so the booked number is new to this record.
    record = (Contact(ContactKind.EMAIL, "0151 22222222"),)

    assert matching.new_contacts(query, record) == (Contact(ContactKind.MOBILE, "+4915122222222"),)
    assert phone_reads == ["0151 22222222"]
