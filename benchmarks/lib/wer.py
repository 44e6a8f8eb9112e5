"""Word error rate as the usual jiwer/Whisper-style scoring computes it: both texts normalised
(lower case, no punctuation, digits, times and `$` amounts spelled out, hyphens as spaces), then
(substitutions + deletions + insertions) / reference words, by a word-level edit distance.
"""

from __future__ import annotations

import re

_ONES = [
    *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"),
    *("eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen"),
    *("eighteen", "nineteen"),
]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def spell(n: int) -> str:
    """A whole number in words (below a million): 365 → "three hundred sixty five"."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + (" " + spell(rest) if rest else "")
    rest = n % 1000
    return spell(n // 1000) + " thousand" + (" " + spell(rest) if rest else "")


def normalise(text: str) -> list[str]:
    """Lower case, times, amounts and digits spelled, hyphens as spaces, no punctuation."""
    text = text.lower().replace("-", " ").replace("%", " percent")
    text = re.sub(r"(\d+):(\d\d)", lambda m: f"{m[1]} {m[2]}", text)  # 7:45 → 7 45
    text = re.sub(r"(?<=\d),(?=\d\d\d)", "", text)  # 1,000 → 1000
    text = re.sub(r"\$(\d+)", r"\1 dollars", text)  # $40 → 40 dollars
    text = re.sub(r"\d+", lambda m: f" {spell(int(m[0]))} " if len(m[0]) < 7 else m[0], text)
    return re.findall(r"[a-z0-9']+", text.replace("\u2019", "'"))


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Word-level Levenshtein distance: substitutions + deletions + insertions."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        diagonal, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (r != h))
    return row[-1]


def wer(pairs: list[tuple[str, str]]) -> float:
    """Corpus word error rate of (reference, hypothesis) pairs."""
    errors = sum(edit_distance(normalise(r), normalise(h)) for r, h in pairs)
    return errors / max(1, sum(len(normalise(r)) for r, _ in pairs))
