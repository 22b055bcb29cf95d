"""Name normalisation for patient matching: the same person's name, typed differently, compares equal.

Applied in this order, each rule tested on its own (tests/test_names.py):
1. Unicode composition (NFC), so "u + combining diaeresis" and "ü" are one letter.
2. Case folding (`str.casefold`): "MÜLLER" = "müller", "ß" and "ẞ" become "ss".
3. German transliteration: ä -> ae, ö -> oe, ü -> ue, and an explicit table for letters that
   Unicode decomposition leaves alone (ı, ø, ł, æ, œ, đ, ...), so "Müller" = "Mueller", "Yılmaz" = "Yilmaz".
4. Remaining accents removed by decomposition: "José" = "Jose".
5. Hyphens and every dash variant, dots and commas separate words; apostrophes join them
   ("Müller-Lüdenscheidt" = "Müller Lüdenscheidt", "O'Brien" = "OBrien"); surrounding and
   repeated white space disappears.
6. Academic titles are dropped (Dr., Prof., Dipl., ...), and so are name additions (Freiherr,
   Gräfin, jun., ...) where a name remains: "Graf" and "Herzog" are common surnames.
   Degree qualifiers (med., phil., rer. nat., -Ing., h.c., ...) are dropped only right after a
   title, since some are names too ("Dr. phil. Anna" = "Anna", but "Phil" stays a first name).
7. Family names only: name particles are dropped (von, van, de, zu, vorm, ...); a name made only of
   particles and additions keeps its last word: "von Arnim" = "Arnim", "Van" stays "van",
   "Graf von Herzog" = "Herzog".
8. Given names only: several first names match when one list starts with the other:
   "Anna" matches "Anna Maria", "Anna-Maria" equals "Anna Maria", but "Maria" does not match "Anna Maria".
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["family_key", "given_match", "given_tokens", "normalize_words"]

# Letters that NFD does not decompose into base letter + mark, spelled as German writes them.
_TRANSLITERATION = str.maketrans(
    {
        "ä": "ae",
        "ö": "oe",
        "ü": "ue",
        "ß": "ss",
        "æ": "ae",
        "œ": "oe",
        "ø": "oe",
        "å": "aa",
        "ı": "i",
        "ł": "l",
        "đ": "d",
        "ð": "d",
        "þ": "th",
        "ħ": "h",
        "ŧ": "t",
        "ŀ": "l",
        "ĸ": "k",
        "ŋ": "ng",
    }
)
_APOSTROPHES = re.compile(r"['’‘`´ʼ]")
# Hyphen-minus, hyphen, non-breaking hyphen, figure dash, en/em dash, horizontal bar, minus,
# small and full-width hyphen-minus; dots, commas and other punctuation separate words too.
_SEPARATORS = re.compile(r"[^\w]+|_")

TITLES = frozenset(
    {"dr", "prof", "professor", "dipl", "ddr", "dres", "drs", "pd", "priv", "doz", "univ", "mag", "msc", "bsc",
     "mba", "llm", "phd"}
)  # fmt: skip
# Only titles when they follow one: "Dr. med.", "Dr. rer. nat.", "Dipl.-Ing.", "Dr. h.c."
QUALIFIERS = frozenset(
    {"med", "dent", "vet", "rer", "nat", "phil", "jur", "oec", "pol", "theol", "habil", "hc", "h", "c", "ing",
     "kfm", "psych", "sc", "soc", "paed", "biol", "chem", "physik", "inform", "math", "pharm", "mult"}
)  # fmt: skip
ADDITIONS = frozenset(
    {
        "freiherr", "freifrau", "freiin", "frhr", "graf", "graefin", "fuerst", "fuerstin", "prinz",
        "prinzessin", "herzog", "herzogin", "baron", "baronin", "baroness", "ritter", "edler", "edle",
        "jun", "jr", "sen", "sr", "junior", "senior",
    }
)  # fmt: skip
PARTICLES = frozenset(
    {
        "von", "van", "vom", "vor", "vorm", "zu", "zum", "zur", "de", "der", "den", "dem", "des", "di", "da",
        "del", "della", "dos", "du", "la", "le", "ten", "ter", "op", "af", "al", "el", "y", "auf", "und",
    }
)  # fmt: skip


def normalize_words(text: str) -> tuple[str, ...]:
    """Rules 1-6 (without name additions, see below): the words of a name, comparable across spellings.

    Rules 1-4 change nothing but case in ASCII text (composition, transliteration and accents are
    all about other letters), so ASCII skips them, and so does what transliteration left ASCII:
    most names, on the matcher's path once for the booking and once per candidate."""
    if text.isascii():
        text = text.lower()
    else:
        text = unicodedata.normalize("NFC", text).casefold().translate(_TRANSLITERATION)
        if not text.isascii():
            decomposed = unicodedata.normalize("NFD", text)
            text = "".join(c for c in decomposed if not unicodedata.combining(c))
    text = _APOSTROPHES.sub("", text)
    kept: list[str] = []
    after_title = False
    for word in (w for w in _SEPARATORS.split(text) if w):
        if word in TITLES or (after_title and word in QUALIFIERS):
            after_title = True
        else:
            kept.append(word)
            after_title = False
    return tuple(kept)


def _without(words: tuple[str, ...], dropped: frozenset[str]) -> tuple[str, ...]:
    """Words without the dropped ones, unless nothing would remain ("Graf", "Van" are surnames too)."""
    return tuple(w for w in words if w not in dropped) or words


def family_key(family_name: str) -> str:
    """Rule 7: the comparable form of a family name ("" if nothing is left)."""
    words = normalize_words(family_name)
    core = tuple(w for w in words if w not in PARTICLES and w not in ADDITIONS)
    # Made only of particles and additions ("Graf", "Van", "Graf von Herzog"): the surname comes last.
    return " ".join(core or words[-1:])


def given_tokens(given_name: str) -> tuple[str, ...]:
    return _without(normalize_words(given_name), ADDITIONS)


def given_match(left: tuple[str, ...], right: tuple[str, ...]) -> bool:
    """Rule 8: one list of first names starts with the other (and neither is empty)."""
    if not left or not right:
        return False
    shorter, longer = (left, right) if len(left) <= len(right) else (right, left)
    return longer[: len(shorter)] == shorter
