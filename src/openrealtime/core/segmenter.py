"""Cut streaming LLM text into speakable pieces, so speech starts after the first clause.

Rules, in order, for where a piece ends:
- at a newline;
- after `.` `!` `?` `;` `:` `…` (and any closing quotes or brackets) once whitespace follows:
  until the next character arrives, `3.` might still become `3.14`;
- but not after an abbreviation (`e.g.`, `Dr.`, `J.`) or a list number (`1.` opening a piece);
- after `,` + whitespace only once the piece has MIN_COMMA_WORDS words;
- right after a CJK full stop, exclamation or question mark, which needs no space;
- at the last word boundary (else anywhere) when a piece outgrows MAX_CHARS.
Markdown marks that would be read aloud (`*`, `#`, backticks, bullets) are stripped, and pieces
with nothing to say (no letter or digit) are dropped.
"""

from __future__ import annotations

import re

# Each piece is synthesized on its own, with its own final intonation and pause, so a very
# short one ("Well," "Yes, so,") sounds choppy. Three words is also about a second of speech,
# long enough to hide the synthesis of the next piece behind its playback.
MIN_COMMA_WORDS = 3
# Bounds the wait for a run-on sentence and the size of one synthesis request.
MAX_CHARS = 200

_ENDERS = frozenset(".!?;:…,")
_CJK_ENDERS = frozenset("\u3002\uff01\uff1f")  # full-width . ! ?
# Quotes, brackets and markdown that may follow the mark: `He said "no." Then`, `**Done.** Next`.
_CLOSERS = frozenset("\"')]}\u201d\u2019»*_`")
_OPENERS = "\"'([{\u201c\u2018«*_`"
_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "etc", "approx", "dept"}
    | {"est", "fig", "inc", "ltd", "co", "corp", "jan", "feb", "mar", "apr", "jun", "jul", "aug"}
    | {"sep", "sept", "oct", "nov", "dec"}
)
_INITIALS = re.compile(r"(?i:(?:[a-z]\.)+[a-z])|[A-Z]")  # e.g, a.m, U.S, or an initial "J"
_MARKDOWN = re.compile(r"[*#`]+")
_BULLET = re.compile(r"^\s*(?:[-+>]\s+)+")
_SPACES = re.compile(r"\s+")


class SentenceSegmenter:
    """Feed text deltas with `push`; each call returns the pieces completed so far."""

    def __init__(self) -> None:
        self._pending = ""
        self._scanned = 0  # characters of `_pending` known not to end a piece

    def push(self, delta: str) -> list[str]:
        self._pending += delta
        pieces: list[str] = []
        while (end := self._find_end()) is not None:
            piece, self._pending = self._pending[:end], self._pending[end:]
            self._scanned = 0
            if cleaned := _clean(piece):
                pieces.append(cleaned)
        return pieces

    def flush(self) -> list[str]:
        """The rest of the text, at the end of the stream."""
        cleaned = _clean(self._pending)
        self._pending, self._scanned = "", 0
        return [cleaned] if cleaned else []

    def _find_end(self) -> int | None:
        """Where the first complete piece of `_pending` ends, or None if none is complete yet."""
        text = self._pending
        i = self._scanned
        while i < min(len(text), MAX_CHARS):
            c = text[i]
            if c == "\n" or c in _CJK_ENDERS:
                return i + 1
            if c in _ENDERS:
                end = i + 1
                while end < len(text) and text[end] in _CLOSERS:
                    end += 1
                if end == len(text):
                    break  # wait for the character that decides it
                if text[end].isspace() and _ends_piece(text[:i], c):
                    return end
            i += 1
        self._scanned = i
        if len(text) <= MAX_CHARS:
            return None
        space = text.rfind(" ", 0, MAX_CHARS + 1)
        return space if space > 0 and text[:space].strip() else MAX_CHARS


def _ends_piece(before: str, mark: str) -> bool:
    """Whether `mark`, after the text `before` and followed by whitespace, ends a piece."""
    if mark == ",":
        words = sum(1 for word in before.split() if any(ch.isalnum() for ch in word))
        return words >= MIN_COMMA_WORDS
    if mark != ".":
        return True
    word_start = len(before) - len(_SPACES.split(before)[-1])
    word = before[word_start:].lstrip(_OPENERS)
    if word.lower() in _ABBREVIATIONS or _INITIALS.fullmatch(word):
        return False
    # "1. " opening a piece is a list number, not the end of a sentence.
    return not (word.isdigit() and not any(ch.isalnum() for ch in before[:word_start]))


def _clean(piece: str) -> str:
    piece = _BULLET.sub("", _MARKDOWN.sub("", piece))
    piece = _SPACES.sub(" ", piece).strip()
    return piece if any(ch.isalnum() for ch in piece) else ""
