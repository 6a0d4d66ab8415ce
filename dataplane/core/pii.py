"""PII and secret detection: ``find_pii`` finds, ``redact`` replaces each find with ``[REDACTED:<KIND>]``.

Detectors (``Kind``): e-mail addresses, phone numbers (``+CC`` international, NANP and trunk-``0`` national
formats), payment cards (13-19 digits, Luhn and known IIN ranges), IBANs (per-country length, mod-97), US SSNs
(``AAA-GG-SSSS`` without the never-issued ranges), IPv4/IPv6 addresses, credentials (``tw_`` keys, OpenAI and
Anthropic ``sk-`` keys, AWS access key ids, GitHub tokens, bearer tokens, high-entropy ``key=``/``password=``
assignments) and PEM private key blocks.

Why it is shaped this way: Python's ``re`` backtracks, so every pattern is a bounded run with a lookbehind that
allows a start only at a token boundary; anything subtler than a shape (Luhn, mod-97, dates versus phones, octet
ranges, entropy) is checked in Python on the candidate, never by nested quantifiers. Each detector is therefore
linear in the length of the text. Everything here is pure and task/thread-safe: the compiled patterns are
read-only constants.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

Kind = Literal["EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IPV4", "IPV6", "CREDENTIAL", "PRIVATE_KEY"]


@dataclass(frozen=True, slots=True)
class Match:
    """``text[start:end]`` is PII of ``kind``."""

    kind: Kind
    start: int
    end: int


_Detector = Callable[[str], Iterator[Match]]

# ---- e-mail -------------------------------------------------------------------------------------------------
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@" + _LABEL + r"(?:\." + _LABEL + r"){0,8}\.[A-Za-z]{2,24}"
    r"(?![A-Za-z0-9-]|\.[A-Za-z0-9])"
)


def _emails(text: str) -> Iterator[Match]:
    for m in _EMAIL.finditer(text):
        yield Match("EMAIL", m.start(), m.end())


# ---- phone numbers ------------------------------------------------------------------------------------------
# A candidate is a bounded run of digits and separators starting at a token boundary; _phone_span decides.
_PHONE_CANDIDATE = re.compile(r"(?<![\w+.\-/])(?:\+|\(\d)[\d ().\-]{6,24}\d|(?<![\w+.\-/])\d[\d ().\-]{6,24}\d")
_NANP = re.compile(r"(?:\([2-9]\d\d\) ?|[2-9]\d\d([-. ]))[2-9]\d\d(?(1)\1|[-. ])\d{4}")
# Digit runs are maximal (each is followed by a separator or the end), so these never backtrack into a run.
_INTL = re.compile(r"\+\d+(?:(?:[ .\-]|[ .\-]?\(\d+\)[ .\-]?)\d+)*")
_TRUNK = re.compile(r"(?:\(0[1-9]\d{0,3}\) ?|0[1-9]\d{0,3}[ .\-])\d{2,8}(?:[ .\-]\d{2,8}){0,4}")
_TRUNK_SEPS = re.compile(r"[ .\-]")


def _digits(s: str) -> int:
    return sum(c.isdigit() for c in s)


def _is_phone(s: str) -> bool:
    digits = _digits(s)
    if s.startswith("+"):
        return 8 <= digits <= 15 and s[1] != "0" and _INTL.fullmatch(s) is not None
    if digits == 10 and _NANP.fullmatch(s):
        return True
    # A trunk-prefixed national number needs grouping (a bare 0123456789 is just an integer) and 9-12 digits,
    # which excludes dates (at most 8 digits); one separator kind excludes "05.06.2024 12.30".
    if not 9 <= digits <= 12 or _TRUNK.fullmatch(s) is None:
        return False
    return len(set(_TRUNK_SEPS.findall(s[s.find(")") + 1 :]))) <= 1


def _phone_span(text: str, start: int, end: int) -> int | None:
    """The end of the longest phone number at ``start`` within the candidate, trimming trailing groups."""
    cand = text[start:end]
    while True:
        if _is_phone(cand):
            return start + len(cand)
        cut = max(cand.rfind(" "), cand.rfind("-"), cand.rfind("."), cand.rfind("("))
        if cut <= 0:
            return None
        cand = cand[:cut].rstrip(" .-(")


def _phones(text: str) -> Iterator[Match]:
    for m in _PHONE_CANDIDATE.finditer(text):
        end = _phone_span(text, m.start(), m.end())
        if end is not None:
            yield Match("PHONE", m.start(), end)


# ---- payment cards ------------------------------------------------------------------------------------------
_CARD_CANDIDATE = re.compile(r"(?<![\d\-])\d(?:[ \-]?\d){12,18}(?![\d])")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = ord(c) - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# (first digits low, high, number of prefix digits, allowed lengths)
_IIN: tuple[tuple[int, int, int, frozenset[int]], ...] = (
    (4, 4, 1, frozenset({13, 16, 19})),  # Visa
    (51, 55, 2, frozenset({16})),  # Mastercard
    (2221, 2720, 4, frozenset({16})),  # Mastercard 2-series
    (34, 34, 2, frozenset({15})),  # American Express
    (37, 37, 2, frozenset({15})),
    (6011, 6011, 4, frozenset(range(16, 20))),  # Discover
    (644, 649, 3, frozenset(range(16, 20))),
    (65, 65, 2, frozenset(range(16, 20))),
    (62, 62, 2, frozenset(range(16, 20))),  # UnionPay
    (3528, 3589, 4, frozenset(range(16, 20))),  # JCB
    (300, 305, 3, frozenset(range(14, 20))),  # Diners Club
    (36, 36, 2, frozenset(range(14, 20))),
    (38, 39, 2, frozenset(range(14, 20))),
    (50, 50, 2, frozenset(range(13, 20))),  # Maestro
    (56, 58, 2, frozenset(range(13, 20))),
    (6759, 6759, 4, frozenset(range(13, 20))),
    (6761, 6763, 4, frozenset(range(13, 20))),
    (2200, 2204, 4, frozenset(range(16, 20))),  # Mir
)


def is_card_number(digits: str) -> bool:
    """A known issuer's prefix and length, and a valid Luhn check digit."""
    if not 13 <= len(digits) <= 19:
        return False
    known = any(lo <= int(digits[:n]) <= hi and len(digits) in lengths for lo, hi, n, lengths in _IIN)
    return known and luhn_ok(digits)


def _cards(text: str) -> Iterator[Match]:
    for m in _CARD_CANDIDATE.finditer(text):
        cand = m.group()
        # One separator style per number: "4111 1111-1111 1111" is not how cards are written.
        if " " in cand and "-" in cand:
            continue
        while len(digits := cand.replace(" ", "").replace("-", "")) >= 13:
            if is_card_number(digits):
                yield Match("CARD", m.start(), m.start() + len(cand))
                break
            cut = max(cand.rfind(" "), cand.rfind("-"))  # the run may have swallowed a following number
            if cut <= 0:
                break
            cand = cand[:cut]


# ---- IBAN ---------------------------------------------------------------------------------------------------
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "BY": 28,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19,
    "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}
_IBAN_CANDIDATE = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?![A-Za-z0-9])")


def is_iban(compact: str) -> bool:
    """Known country, its length, and the ISO 13616 mod-97 check."""
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _ibans(text: str) -> Iterator[Match]:
    for m in _IBAN_CANDIDATE.finditer(text):
        cand = m.group()
        while cand:
            if is_iban(cand.replace(" ", "")):
                yield Match("IBAN", m.start(), m.start() + len(cand))
                break
            cut = cand.rfind(" ")  # the candidate may have swallowed a following word: retry without it
            cand = cand[:cut] if cut > 4 else ""


# ---- US SSN -------------------------------------------------------------------------------------------------
_SSN = re.compile(r"(?<![\w\-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w\-])")


def _ssns(text: str) -> Iterator[Match]:
    for m in _SSN.finditer(text):
        yield Match("SSN", m.start(), m.end())


# ---- IP addresses -------------------------------------------------------------------------------------------
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(r"(?<![\w.])" + _OCTET + r"(?:\." + _OCTET + r"){3}(?![\w]|\.\d)")
_IPV6_CANDIDATE = re.compile(
    r"(?<![\w:.])[0-9A-Fa-f:]{2,39}(?:(?<=:)\d{1,3}(?:\.\d{1,3}){3})?(?![\w:]|\.\d)"
)


def _ipv4s(text: str) -> Iterator[Match]:
    for m in _IPV4.finditer(text):
        yield Match("IPV4", m.start(), m.end())


def _ipv6s(text: str) -> Iterator[Match]:
    for m in _IPV6_CANDIDATE.finditer(text):
        s = m.group()
        if s.count(":") < 2 or not any(c not in ":" for c in s):
            continue
        try:
            ipaddress.IPv6Address(s)
        except ValueError:
            continue
        yield Match("IPV6", m.start(), m.end())


# ---- credentials --------------------------------------------------------------------------------------------
_TOKENS = re.compile(
    r"(?<![\w\-])(?:"
    r"tw_[0-9A-Za-z]{16,128}"
    r"|sk-[A-Za-z0-9_\-]{20,256}"  # OpenAI (sk-, sk-proj-, ...) and Anthropic (sk-ant-...)
    r"|(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}"
    r"|gh[pousr]_[A-Za-z0-9]{36,255}"
    r"|github_pat_[A-Za-z0-9_]{22,255}"
    r"|xox[abprs]-[A-Za-z0-9\-]{10,255}"
    r")(?![\w\-])"
)
_BEARER = re.compile(r"(?i)(?<![\w])bearer[ \t]{1,8}([A-Za-z0-9\-._~+/]{16,2048}=*)")
_ASSIGNMENT = re.compile(
    r"(?i)(?<![A-Za-z0-9])(?:(?P<pw>password|passwd|pwd|passphrase)"
    r"|(?:api[_\-]?key|access[_\-]?key|secret[_\-]?key|client[_\-]?secret|auth[_\-]?token|access[_\-]?token"
    r"|private[_\-]?key|secret|token|key))"
    r"[\"']?[ \t]{0,8}[:=][ \t]{0,8}[\"']?(?P<value>[^\s\"',;&<>]{4,256})"
)
_PLACEHOLDER = re.compile(r"(?i)^(?:\$\{.*\}|\{\{.*\}\}|<.*>|%s|\*+|x+|null|none|true|false|undefined|redacted)$")


def _entropy(s: str) -> float:
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def _is_secret_value(value: str, is_password: bool) -> bool:
    if _PLACEHOLDER.match(value) or value.startswith("[REDACTED"):
        return False
    if is_password:
        return len(set(value)) > 2  # any real password; not "****" or "xxxx"
    # A key/token/secret value must look random: long, mixed letters and digits, high entropy.
    has_digit = any(c.isdigit() for c in value)
    has_alpha = any(c.isalpha() for c in value)
    return len(value) >= 16 and has_digit and has_alpha and _entropy(value) >= 3.0


def _credentials(text: str) -> Iterator[Match]:
    for m in _TOKENS.finditer(text):
        yield Match("CREDENTIAL", m.start(), m.end())
    for m in _BEARER.finditer(text):
        yield Match("CREDENTIAL", m.start(1), m.end(1))
    for m in _ASSIGNMENT.finditer(text):
        if _is_secret_value(m.group("value"), m.group("pw") is not None):
            yield Match("CREDENTIAL", m.start("value"), m.end("value"))


_PEM_BEGIN = re.compile(r"-----BEGIN (?:[A-Z0-9]{1,16} ){0,4}PRIVATE KEY( BLOCK)?-----")
_PEM_END = re.compile(r"-----END (?:[A-Z0-9]{1,16} ){0,4}PRIVATE KEY( BLOCK)?-----")


def _private_keys(text: str) -> Iterator[Match]:
    pos = 0
    while (begin := _PEM_BEGIN.search(text, pos)) is not None:
        end = _PEM_END.search(text, begin.end())
        # An unterminated block (a truncated paste) is still a key: redact to the end of the text.
        stop = end.end() if end is not None else len(text)
        yield Match("PRIVATE_KEY", begin.start(), stop)
        pos = stop


_DETECTORS: tuple[_Detector, ...] = (
    _private_keys, _credentials, _emails, _ibans, _cards, _ssns, _ipv6s, _ipv4s, _phones,
)


def find_pii(text: str) -> list[Match]:
    """Non-overlapping finds in text order. Where two overlap, the earlier wins, then the longer."""
    found = sorted((m for detect in _DETECTORS for m in detect(text)), key=lambda m: (m.start, m.start - m.end))
    kept: list[Match] = []
    for m in found:
        if not kept or m.start >= kept[-1].end:
            kept.append(m)
    return kept


def redact(text: str) -> str:
    """``text`` with each find replaced by ``[REDACTED:<KIND>]``."""
    matches = find_pii(text)
    if not matches:
        return text
    parts: list[str] = []
    pos = 0
    for m in matches:
        parts.append(text[pos : m.start])
        parts.append(f"[REDACTED:{m.kind}]")
        pos = m.end
    parts.append(text[pos:])
    return "".join(parts)
