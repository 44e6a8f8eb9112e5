"""SentenceSegmenter: where streamed LLM text is cut into pieces to speak."""

from __future__ import annotations

import random

import pytest

from openrealtime.core.segmenter import MAX_CHARS, SentenceSegmenter

CASES: list[tuple[str, list[str]]] = [
    # Sentence ends.
    ("Hello! How are you today? I am fine.", ["Hello!", "How are you today?", "I am fine."]),
    ("First; second: third.", ["First;", "second:", "third."]),
    ("Wait... what?! Really.", ["Wait...", "what?!", "Really."]),
    ("Ends without a mark", ["Ends without a mark"]),
    # Commas only once the piece has three words.
    ("Yes, of course, I can help.", ["Yes, of course,", "I can help."]),
    ("Well, I think, honestly, it works.", ["Well, I think,", "honestly, it works."]),
    ("So, yes.", ["So, yes."]),
    # Numbers.
    ("Pi is 3.14 and 1,000 is big. Next.", ["Pi is 3.14 and 1,000 is big.", "Next."]),
    ("It costs 3. Then more.", ["It costs 3.", "Then more."]),
    ("Version 2.0. Done.", ["Version 2.0.", "Done."]),
    ("At 10:30 we meet.", ["At 10:30 we meet."]),
    # Abbreviations and initials.
    ("Ask Dr. Smith, e.g. today. Ok.", ["Ask Dr. Smith,", "e.g. today.", "Ok."]),
    ("Ask Dr. Who e.g. today. Ok.", ["Ask Dr. Who e.g. today.", "Ok."]),
    ("Apples, pears, etc. are fruit. Yes.", ["Apples, pears, etc. are fruit.", "Yes."]),
    ("Mr. J. R. Tolkien wrote it. Really.", ["Mr. J. R. Tolkien wrote it.", "Really."]),
    ("Made in the U.S. by hand. End.", ["Made in the U.S. by hand.", "End."]),
    # Closing quotes, brackets and markdown after the mark.
    ('He said "no." Then he left.', ['He said "no."', "Then he left."]),
    ("(See above.) Next.", ["(See above.)", "Next."]),
    ("**Done.** Next step: go.", ["Done.", "Next step:", "go."]),
    # Newlines, lists and markdown.
    ("Line one\nLine two", ["Line one", "Line two"]),
    ("## Options\n\n1. First item\n2. Second item", ["Options", "1. First item", "2. Second item"]),
    ("- a *bold* claim\n- `code` here", ["a bold claim", "code here"]),
    ("> quoted text", ["quoted text"]),
    # Nothing to say.
    ("...\n---\n** **", []),
    ("", []),
    # CJK full stops need no space after them.
    ("你好。世界\uff01好吗\uff1f", ["你好。", "世界\uff01", "好吗\uff1f"]),
]


def feed(deltas: list[str]) -> list[str]:
    segmenter = SentenceSegmenter()
    pieces: list[str] = []
    for delta in deltas:
        pieces += segmenter.push(delta)
    return pieces + segmenter.flush()


def random_deltas(text: str, rng: random.Random) -> list[str]:
    deltas, i = [], 0
    while i < len(text):
        size = rng.randint(1, 12)
        deltas.append(text[i : i + size])
        i += size
    return deltas


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_char_by_char(text: str, expected: list[str]) -> None:
    assert feed(list(text)) == expected


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_random_deltas(text: str, expected: list[str]) -> None:
    rng = random.Random(text)
    for _ in range(20):
        assert feed(random_deltas(text, rng)) == expected


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_whole_text_at_once(text: str, expected: list[str]) -> None:
    assert feed([text]) == expected


def test_a_piece_is_released_as_soon_as_it_is_known_to_end() -> None:
    segmenter = SentenceSegmenter()
    assert segmenter.push("It costs 3.") == []  # might still become 3.14
    assert segmenter.push("1") == []
    assert segmenter.push("4 dollars.") == []
    assert segmenter.push(" And") == ["It costs 3.14 dollars."]
    assert segmenter.push(" more\n") == ["And more"]  # a newline ends it at once
    assert segmenter.flush() == []


def test_run_on_text_is_cut_at_a_word_boundary() -> None:
    words = [f"word{i}" for i in range(100)]
    pieces = feed(list(" ".join(words)))
    assert all(len(piece) <= MAX_CHARS for piece in pieces)
    assert len(pieces) > 1
    assert " ".join(pieces).split() == words  # no word split or lost


def test_a_word_longer_than_a_piece_is_cut_anyway() -> None:
    url = "https://example.com/" + "x" * 400
    pieces = feed(list(url))
    assert "".join(pieces) == url
    assert all(len(piece) <= MAX_CHARS for piece in pieces)


def test_flush_resets_for_the_next_response() -> None:
    segmenter = SentenceSegmenter()
    segmenter.push("Unfinished thought")
    assert segmenter.flush() == ["Unfinished thought"]
    assert segmenter.push("Fresh start. ") == ["Fresh start."]
