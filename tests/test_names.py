"""Name normalisation and contact values, rule by rule (see the docstrings of names.py and contact_values.py)."""

from __future__ import annotations

import pytest

from otv_rules.contact_values import ContactValueError, normalize_email, normalize_phone
from otv_rules.names import family_key, given_match, given_tokens, normalize_words


@pytest.mark.parametrize(
    ("rule", "left", "right"),
    [
        ("1 NFC", "Mu\u0308ller", "Müller"),
        ("2 case folding", "MÜLLER", "müller"),
        ("2 sharp s", "Weiß", "WEISS"),
        ("2 capital sharp s", "WEIẞ", "weiss"),
        ("3 umlauts", "Jürgen Müller Öztürk Bär", "Juergen Mueller Oeztuerk Baer"),
        ("3 dotless i", "Yılmaz", "Yilmaz"),
        ("3 o slash", "Søren Jørgensen", "Soeren Joergensen"),
        ("3 l stroke", "Łukasz", "Lukasz"),
        ("3 ae ligature", "Cæsar", "Caesar"),
        ("4 accents", "José García Françoise", "Jose Garcia Francoise"),
        ("5 hyphen", "Müller-Lüdenscheidt", "Müller Lüdenscheidt"),
        ("5 dashes", "Müller‐Lüdenscheidt", "Müller—Lüdenscheidt"),
        ("5 apostrophe joins", "O'Brien", "OBrien"),
        ("5 typographic apostrophe", "D’Angelo", "DAngelo"),
        ("5 white space", "  Anna \t Maria  ", "Anna Maria"),
        ("6 titles", "Prof. Dr. med. Anna", "Anna"),
        ("6 degree after title", "Dr. rer. nat. Eva", "Eva"),
        ("6 engineer", "Dipl.-Ing. Jan", "Jan"),
        ("6 honorary", "Dr. h.c. mult. Otto", "Otto"),
    ],
)
def test_equal_after_normalisation(rule: str, left: str, right: str) -> None:
    assert normalize_words(left) == normalize_words(right)


@pytest.mark.parametrize(
    ("left", "right"),
    [("Phil", "Dr."), ("Ma", ""), ("Müller", "Muller")],
)
def test_different_names_stay_different(left: str, right: str) -> None:
    assert normalize_words(left) != normalize_words(right)


@pytest.mark.parametrize(("left", "right"), [("Karl Freiherr", "Karl"), ("Hans jun.", "Hans")])
def test_given_names_drop_name_additions(left: str, right: str) -> None:
    assert given_tokens(left) == given_tokens(right)


def test_a_degree_word_is_a_name_when_no_title_precedes_it() -> None:
    assert normalize_words("Phil Collins") == ("phil", "collins")
    assert normalize_words("Dr. phil. Collins") == ("collins",)


@pytest.mark.parametrize(
    ("left", "right"),
    [("von Arnim", "Arnim"), ("van der Berg", "Berg"), ("Freiherr vom Stein", "Stein"), ("de la Cruz", "Cruz")],
)
def test_family_names_drop_particles(left: str, right: str) -> None:
    assert family_key(left) == family_key(right)


@pytest.mark.parametrize("surname", ["Graf", "Herzog", "Ritter", "Baron", "Prinz"])
def test_a_surname_that_is_also_a_name_addition_is_kept(surname: str) -> None:
    assert family_key(surname) == surname.lower()
    assert family_key(f"Graf von {surname}") == surname.lower()


def test_a_surname_made_only_of_a_particle_is_kept() -> None:
    assert family_key("Van") == "van"
    assert family_key("Van") != family_key("Vanek")


@pytest.mark.parametrize(
    ("stored", "given", "matches"),
    [
        ("Anna Maria", "Anna", True),
        ("Anna", "Anna Maria", True),
        ("Anna Maria", "Anna-Maria", True),
        ("Anna Maria", "Maria", False),
        ("Anna", "Anne", False),
        ("Anna", "", False),
    ],
)
def test_several_first_names(stored: str, given: str, matches: bool) -> None:
    assert given_match(given_tokens(stored), given_tokens(given)) is matches


@pytest.mark.parametrize(
    ("value", "e164"),
    [
        ("+49 151 12345678", "+4915112345678"),
        ("0151 12345678", "+4915112345678"),
        ("0049 (151) 1234-5678", "+4915112345678"),
        ("030 555707380", "+4930555707380"),
        ("+44 20 7946 0958", "+442079460958"),
    ],
)
def test_phone_numbers_compare_as_e164(value: str, e164: str) -> None:
    assert normalize_phone(value) == e164


@pytest.mark.parametrize("value", ["4915112345678", "15112345678", "49 151 12345678"])
def test_a_number_without_plus_or_trunk_zero_is_ambiguous_not_guessed(value: str) -> None:
    with pytest.raises(ContactValueError, match="ambiguous"):
        normalize_phone(value)


@pytest.mark.parametrize("value", ["", "0151", "+49 12", "phone"])
def test_invalid_phone_numbers_are_refused(value: str) -> None:
    with pytest.raises(ContactValueError):
        normalize_phone(value)


def test_email_addresses_are_trimmed_and_case_folded() -> None:
    assert normalize_email("  Erika.Mustermann@Example.ORG ") == "erika.mustermann@example.org"
    with pytest.raises(ContactValueError):
        normalize_email("erika@")
