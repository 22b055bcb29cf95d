"""Patients: records from a PVS, the details a booking form takes, and a patient lookup's outcome.

Details are partner input, so every part is validated here, naming `field.part`: names, contacts,
gender, a postal address (an ISO 3166-1 alpha-2 country; postcode shapes for the countries in
`_POSTCODES`, letters, digits, spaces or hyphens elsewhere) and the free-text note.
`_CONTACT_KINDS` is also used by sandbox scenarios.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from otv.v1 import patient_lookup_service_pb2, patient_pb2
from otv_sdk.conversion.instants import (
    birth_date_from_proto,
    date_to_proto,
    datetime_to_timestamp,
    optional_date,
    optional_timestamp,
)
from otv_sdk.errors import InvalidArgument
from otv_sdk.limits import (
    MAX_CONTACT_VALUE,
    MAX_CONTACTS,
    MAX_LOCALITY,
    MAX_NAME_PART,
    MAX_PATIENT_NOTE,
    MAX_POSTAL_CODE,
    MAX_STREET,
)
from otv_sdk.models import Contact, ContactKind, Gender, Patient, PatientDetails, PostalAddress
from otv_sdk.ports import MatchOutcome
from otv_sdk.resources import format_name, parse_practice_child

__all__ = [
    "COUNTRY_CODES",
    "address_from_proto",
    "address_to_proto",
    "contact_kind_to_proto",
    "contacts_from_proto",
    "gender_from_proto",
    "gender_to_proto",
    "match_outcome_from_proto",
    "match_outcome_to_proto",
    "name_part",
    "patient_details_from_proto",
    "patient_details_to_proto",
    "patient_from_proto",
    "patient_note_from_proto",
    "patient_to_proto",
]


_CONTACT_KINDS = {
    ContactKind.PHONE: patient_pb2.CONTACT_KIND_PHONE,
    ContactKind.MOBILE: patient_pb2.CONTACT_KIND_MOBILE,
    ContactKind.EMAIL: patient_pb2.CONTACT_KIND_EMAIL,
}
_CONTACT_KINDS_BACK = {v: k for k, v in _CONTACT_KINDS.items()}


def contact_kind_to_proto(kind: ContactKind) -> patient_pb2.ContactKind.ValueType:
    return _CONTACT_KINDS[kind]


def contacts_from_proto(
    contacts: Sequence[patient_pb2.Contact], field: str = "contacts", limit: int | None = None
) -> tuple[Contact, ...]:
    """`limit` caps how many a request may carry (a PVS's own records may hold more)."""
    if limit is not None and len(contacts) > limit:
        raise InvalidArgument.field(field, f"has more than {limit} contacts")
    result: list[Contact] = []
    for index, contact in enumerate(contacts):
        kind = _CONTACT_KINDS_BACK.get(contact.kind)
        if kind is None:
            raise InvalidArgument.field(f"{field}[{index}].kind", "is required")
        value = contact.value.strip()
        if not value:
            raise InvalidArgument.field(f"{field}[{index}].value", "is required")
        if len(value) > MAX_CONTACT_VALUE:
            raise InvalidArgument.field(f"{field}[{index}].value", f"is longer than {MAX_CONTACT_VALUE} characters")
        result.append(Contact(kind, value))
    return tuple(result)


def patient_to_proto(practice_id: str, patient: Patient) -> patient_pb2.Patient:
    msg = patient_pb2.Patient(
        name=format_name(practice_id, "patients", patient.id),
        given_name=patient.given_name,
        family_name=patient.family_name,
        contacts=[patient_pb2.Contact(kind=_CONTACT_KINDS[c.kind], value=c.value) for c in patient.contacts],
        created_online=patient.created_online,
    )
    if patient.birth_date is not None:
        msg.birth_date.CopyFrom(date_to_proto(patient.birth_date))
    if patient.create_time is not None:
        msg.create_time.CopyFrom(datetime_to_timestamp(patient.create_time))
    return msg


def patient_from_proto(practice_id: str, msg: patient_pb2.Patient, field: str) -> Patient:
    return Patient(
        id=parse_practice_child(msg.name, f"{field}.name", "patients", practice_id),
        given_name=msg.given_name,
        family_name=msg.family_name,
        birth_date=optional_date(msg, "birth_date", f"{field}.birth_date"),
        contacts=contacts_from_proto(msg.contacts, f"{field}.contacts"),
        created_online=msg.created_online,
        create_time=optional_timestamp(msg, "create_time", f"{field}.create_time"),
    )


def name_part(value: str, field: str) -> str:
    """A required given or family name, trimmed."""
    cleaned = value.strip()
    if not cleaned:
        raise InvalidArgument.field(field, "is required")
    if len(cleaned) > MAX_NAME_PART:
        raise InvalidArgument.field(field, f"is longer than {MAX_NAME_PART} characters")
    return cleaned


_GENDERS = {
    Gender.FEMALE: patient_pb2.GENDER_FEMALE,
    Gender.MALE: patient_pb2.GENDER_MALE,
    Gender.DIVERSE: patient_pb2.GENDER_DIVERSE,
    Gender.UNDISCLOSED: patient_pb2.GENDER_UNDISCLOSED,
}
_GENDERS_BACK = {v: k for k, v in _GENDERS.items()}


def gender_from_proto(value: int, field: str) -> Gender | None:
    """None for GENDER_UNSPECIFIED (not given); a number the contract does not define is refused."""
    if value == patient_pb2.GENDER_UNSPECIFIED:
        return None
    if value not in _GENDERS_BACK:
        raise InvalidArgument.field(field, "is not a gender this contract defines")
    return _GENDERS_BACK[value]  # type: ignore[index]


def gender_to_proto(gender: Gender | None) -> patient_pb2.Gender.ValueType:
    return patient_pb2.GENDER_UNSPECIFIED if gender is None else _GENDERS[gender]


# ISO 3166-1 alpha-2: the 249 officially assigned codes.
_COUNTRIES = """AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT
BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI
FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ
IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK
ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN
PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH
TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW"""
COUNTRY_CODES = frozenset(_COUNTRIES.split())
# Postcode shapes checked per country; elsewhere 1-10 letters, digits, spaces or hyphens.
_POSTCODES = {
    "DE": (re.compile(r"[0-9]{5}"), "five digits"),
    "AT": (re.compile(r"[0-9]{4}"), "four digits"),
    "CH": (re.compile(r"[0-9]{4}"), "four digits"),
    "LI": (re.compile(r"[0-9]{4}"), "four digits"),
    "BE": (re.compile(r"[0-9]{4}"), "four digits"),
    "DK": (re.compile(r"[0-9]{4}"), "four digits"),
    "LU": (re.compile(r"[0-9]{4}"), "four digits"),
    "NL": (re.compile(r"[0-9]{4} ?[A-Z]{2}"), "four digits and two capital letters"),
}
_ANY_POSTCODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 -]*")


def _line(value: str, field: str, limit: int) -> str:
    """One line of free text: trimmed, printable, at most `limit` characters."""
    cleaned = value.strip()
    if len(cleaned) > limit:
        raise InvalidArgument.field(field, f"is longer than {limit} characters")
    if not cleaned.isprintable():
        raise InvalidArgument.field(field, "contains control characters")
    return cleaned


def patient_note_from_proto(value: str, field: str) -> str:
    """What the patient wrote for the practice: lines of printable text, at most MAX_PATIENT_NOTE."""
    cleaned = value.strip()
    if len(cleaned) > MAX_PATIENT_NOTE:
        raise InvalidArgument.field(field, f"is longer than {MAX_PATIENT_NOTE} characters")
    if not all(line.isprintable() for line in cleaned.replace("\r\n", "\n").split("\n")):
        raise InvalidArgument.field(field, "contains control characters other than line breaks")
    return cleaned.replace("\r\n", "\n")


def address_from_proto(parent: object, name: str, field: str) -> PostalAddress | None:
    """None when unset or empty; else `country` is required and every part is checked."""
    if not parent.HasField(name):  # type: ignore[attr-defined]
        return None
    msg: patient_pb2.PostalAddress = getattr(parent, name)
    street = _line(msg.street, f"{field}.street", MAX_STREET)
    postal_code = _line(msg.postal_code, f"{field}.postal_code", MAX_POSTAL_CODE)
    locality = _line(msg.locality, f"{field}.locality", MAX_LOCALITY)
    country = msg.country.strip()
    if not (street or postal_code or locality or country):
        return None
    if not country:
        raise InvalidArgument.field(f"{field}.country", "is required with an address (ISO 3166-1 alpha-2, e.g. DE)")
    if country not in COUNTRY_CODES:
        raise InvalidArgument.field(f"{field}.country", "is not an ISO 3166-1 alpha-2 code in capitals (e.g. DE)")
    if postal_code:
        shape, described = _POSTCODES.get(country, (_ANY_POSTCODE, "letters, digits, spaces or hyphens"))
        if not shape.fullmatch(postal_code):
            raise InvalidArgument.field(f"{field}.postal_code", f"must be {described} for {country}")
    return PostalAddress(street, postal_code, locality, country)


def address_to_proto(address: PostalAddress) -> patient_pb2.PostalAddress:
    return patient_pb2.PostalAddress(
        street=address.street, postal_code=address.postal_code, locality=address.locality, country=address.country
    )


def patient_details_from_proto(msg: patient_pb2.PatientDetails, field: str) -> PatientDetails:
    """The patient as a booking form took it; every part validated, naming `field.part`."""
    return PatientDetails(
        given_name=name_part(msg.given_name, f"{field}.given_name"),
        family_name=name_part(msg.family_name, f"{field}.family_name"),
        birth_date=birth_date_from_proto(msg, "birth_date", f"{field}.birth_date"),
        contacts=contacts_from_proto(msg.contacts, f"{field}.contacts", limit=MAX_CONTACTS),
        gender=gender_from_proto(msg.gender, f"{field}.gender"),
        address=address_from_proto(msg, "address", f"{field}.address"),
        note=patient_note_from_proto(msg.note, f"{field}.note"),
    )


def patient_details_to_proto(details: PatientDetails) -> patient_pb2.PatientDetails:
    msg = patient_pb2.PatientDetails(
        given_name=details.given_name,
        family_name=details.family_name,
        birth_date=date_to_proto(details.birth_date),
        contacts=[patient_pb2.Contact(kind=_CONTACT_KINDS[c.kind], value=c.value) for c in details.contacts],
        gender=gender_to_proto(details.gender),
        note=details.note,
    )
    if details.address is not None:
        msg.address.CopyFrom(address_to_proto(details.address))
    return msg


_MATCH_OUTCOMES = {
    MatchOutcome.MATCHED: patient_lookup_service_pb2.MATCH_OUTCOME_MATCHED,
    MatchOutcome.CREATED: patient_lookup_service_pb2.MATCH_OUTCOME_CREATED,
}
_MATCH_OUTCOMES_BACK = {v: k for k, v in _MATCH_OUTCOMES.items()}


def match_outcome_to_proto(outcome: MatchOutcome) -> patient_lookup_service_pb2.MatchOutcome.ValueType:
    return _MATCH_OUTCOMES[outcome]


def match_outcome_from_proto(value: int, field: str) -> MatchOutcome:
    if value not in _MATCH_OUTCOMES_BACK:
        raise InvalidArgument.field(field, "is required")
    return _MATCH_OUTCOMES_BACK[value]  # type: ignore[index]
