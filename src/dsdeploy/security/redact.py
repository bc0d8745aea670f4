"""Personal data out of text before it is kept (``--audit-content redacted``).

Each kind is found by the cheapest check that is still right, and numbers are validated,
not just matched: a resident ID's birth date and ISO 7064 MOD 11-2 check digit, a card's
Luhn sum, an IP address's parse, a phone number's numbering plan (``phonenumbers``, Google's
libphonenumber data). Names have no pattern: Chinese ones are jieba's ``nr`` (person name)
part-of-speech tag, English ones a pair of capitalized words with a first name or surname
from the US census lists (the ``names`` package), or a title before a capitalized word.
``benchmarks/redactor.py`` measured this against a names-free and a Presidio pattern-only
redactor; see docs/design.md.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import phonenumbers

KINDS = ("id", "phone", "email", "card", "ip", "name")


@dataclass(frozen=True, order=True)
class Span:
    start: int
    end: int
    kind: str


class Finder(Protocol):
    def find(self, text: str) -> Iterable[Span]: ...


ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"


def resident_id_valid(number: str) -> bool:
    """GB 11643-1999: a birth date at characters 7-14, and the 18th character the ISO 7064
    MOD 11-2 check of the first 17 (one random number in 11 passes that alone)."""
    try:
        datetime.strptime(number[6:14], "%Y%m%d")
    except ValueError:
        return False
    total = sum(int(digit) * weight for digit, weight in zip(number[:17], ID_WEIGHTS, strict=True))
    return ID_CHECK[total % 11] == number[17].upper()


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def ip_valid(candidate: str) -> bool:
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Pattern:
    kind: str
    regex: re.Pattern[str]
    valid: Any = None
    """A check of the matched text (digits only for numbers), or None."""

    def find(self, text: str) -> Iterator[Span]:
        for match in self.regex.finditer(text):
            found = match.group()
            digits = re.sub(r"\D", "", found) if self.kind in ("id", "card") else found
            if self.valid is None or self.valid(digits if self.kind != "id" else found):
                yield Span(match.start(), match.end(), self.kind)


PATTERNS = (
    Pattern("id", re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])"), resident_id_valid),
    Pattern(
        "email", re.compile(r"[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}", re.ASCII)
    ),
    # Card numbers start 2-6 (Mastercard 2/5, Amex/JCB/Diners 3, Visa 4, UnionPay/Discover 6).
    Pattern("card", re.compile(r"(?<![\d-])[2-6](?:[ -]?\d){12,18}(?![\d-])"), luhn_valid),
    Pattern("phone", re.compile(r"(?<![\d+])(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?!\d)")),
    Pattern("ip", re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])"), ip_valid),
    Pattern(
        "ip",
        re.compile(r"(?<![0-9A-Za-z:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Za-z:])"),
        ip_valid,
    ),
)


class Phones:
    """International numbers (``+44 20 7946 0958``) and Chinese landlines, by
    libphonenumber's matcher, which checks each number against its country's plan."""

    def find(self, text: str) -> Iterator[Span]:
        if sum(char.isdigit() for char in text) < 7:
            return
        for match in phonenumbers.PhoneNumberMatcher(text, "CN"):
            yield Span(match.start, match.end, "phone")


CJK = re.compile(r"[\u4e00-\u9fff]")
CJK_RUN = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf·]+")


class ChineseNames:
    """jieba's person-name tag (``nr``) on the runs of Chinese characters."""

    def __init__(self) -> None:
        import jieba
        import jieba.posseg

        jieba.setLogLevel(60)  # its dictionary-loading chatter is not the gateway's log
        self._tagger = jieba.posseg.POSTokenizer(jieba.Tokenizer())

    def find(self, text: str) -> Iterator[Span]:
        if not CJK.search(text):
            return
        for run in CJK_RUN.finditer(text):
            offset = run.start()
            for pair in self._tagger.cut(run.group(), HMM=True):
                word, flag = pair.word, pair.flag
                if flag == "nr" and len(word) >= 2:  # noqa: PLR2004 (a surname alone is not one)
                    yield Span(offset, offset + len(word), "name")
                offset += len(word)


@cache
def census(kind: str) -> frozenset[str]:
    """A US census name list shipped by the ``names`` package (upper case)."""
    import names

    path = Path(names.__file__).parent / f"dist.{kind}"
    return frozenset(line.split()[0] for line in path.read_text().splitlines() if line)


WORD = re.compile(r"\b[A-Z][a-z]+(?:[-'][A-Z][a-z]+)?\b")
TITLES = frozenset({"Mr", "Mrs", "Ms", "Miss", "Dr", "Prof", "Sir", "Madam"})
NOT_FIRST = frozenset(
    {
        "The",
        "A",
        "An",
        "Our",
        "My",
        "Your",
        "His",
        "Her",
        "Their",
        "Its",
        "This",
        "That",
        "These",
        "Those",
        "In",
        "On",
        "At",
        "For",
        "From",
        "To",
        "By",
        "With",
        "Of",
        "And",
        "But",
        "Or",
        "If",
        "When",
        "Dear",
        "Hi",
        "Hello",
        "New",
        "Saint",
        "St",
    }  # fmt: skip
)
"""Capitalized words that begin sentences and place names, never a first name."""


class EnglishNames:
    """Two capitalized words side by side of which one is a census first name or the second
    a census surname (``Priya Walker``, ``Alice Okafor``), or a title before a capitalized
    word (``Dr. Okafor``): a lone capitalized word is too often a month, a place or the
    start of a sentence to be called a name."""

    def __init__(self) -> None:
        self._first = census("male.first") | census("female.first")
        self._last = census("all.last")

    def find(self, text: str) -> Iterator[Span]:
        words = list(WORD.finditer(text))
        pairs = [
            (this, following, text[this.end() : following.start()])
            for this, following in zip(words, words[1:], strict=False)
        ]
        for index, (this, following, gap) in enumerate(pairs):
            first, last = this.group(), following.group()
            if first in TITLES and gap in (" ", ". "):
                yield Span(following.start(), following.end(), "name")
            elif (
                gap == " "
                and first not in NOT_FIRST
                and (
                    first.upper() in self._first
                    or (self._surname(last) and not self._starts_name(pairs[index + 1 :]))
                )
            ):
                yield Span(this.start(), following.end(), "name")

    def _surname(self, word: str) -> bool:
        return word.upper().split("-")[0] in self._last

    def _starts_name(self, rest: list[tuple[re.Match[str], re.Match[str], str]]) -> bool:
        """The next pair is a first name and a word (``Ask Mary Walker``): that is the name."""
        return bool(rest) and rest[0][2] == " " and rest[0][0].group().upper() in self._first


def merged(spans: Iterable[Span]) -> list[Span]:
    """Overlapping spans kept as the first-found (resident IDs before cards before phones),
    widest where they start together."""
    kept: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, -(s.end - s.start))):
        if kept and span.start < kept[-1].end:
            continue
        kept.append(span)
    return kept


class Redactor:
    """Replaces each found span with ``[KIND]``."""

    def __init__(self, finders: Iterable[Finder]) -> None:
        self.finders = tuple(finders)

    def spans(self, text: str) -> list[Span]:
        return merged(span for finder in self.finders for span in finder.find(text))

    def __call__(self, text: str) -> str:
        out, position = [], 0
        for span in self.spans(text):
            out += [text[position : span.start], f"[{span.kind.upper()}]"]
            position = span.end
        return "".join([*out, text[position:]])


def default_redactor() -> Redactor:
    """The measured choice: checked patterns, libphonenumber, jieba and census names."""
    return Redactor([*PATTERNS, Phones(), ChineseNames(), EnglishNames()])
