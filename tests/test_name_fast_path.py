"""ASCII names skip composition, transliteration and accent removal (`normalize_words`): the words
must be exactly those of the full path, which a trailing combining accent forces (rule 4 drops it)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from otv_rules.names import family_key, given_tokens, normalize_words

ASCII = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=40)


@given(ASCII)
def test_ascii_words_equal_the_full_path(text: str) -> None:
    assert normalize_words(text) == normalize_words(text + "\u0301")


@given(ASCII)
def test_ascii_name_keys_equal_the_full_path(text: str) -> None:
    assert family_key(text) == family_key(text + "\u0301")
    assert given_tokens(text) == given_tokens(text + "\u0301")
