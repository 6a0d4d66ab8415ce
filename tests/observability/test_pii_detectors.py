"""PII detectors: each kind on true positives (found, exact span) and false positives (not found)."""

from __future__ import annotations

import pytest

from dataplane.core.pii import find_pii, is_card_number, is_iban, luhn_ok, redact
from tollway.keyformat import generate_key

pytestmark = pytest.mark.pure

TW_KEY = generate_key()
PEM = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1c7+9z5Pad7OejecsQ0bu3aozN3tihPmljnnudb9G3HecDFn\n"
       "-----END RSA PRIVATE KEY-----")

# (kind, the PII itself, the text around it: "{}" marks where it goes)
TRUE_POSITIVES = [
    ("EMAIL", "jane.doe@example.com", "mail {} today"),
    ("EMAIL", "j+tag@mail.example.co.uk", "<{}>"),
    ("EMAIL", "first_last%x@sub-domain.example.org", "({})."),
    ("PHONE", "+1 (415) 555-0132", "call {} now"),
    ("PHONE", "+44 20 7946 0958", "UK office: {}."),
    ("PHONE", "+4915112345678", "mobile {}"),
    ("PHONE", "+33 (0)1 23 45 67 89", "Paris {}"),
    ("PHONE", "(415) 555-0132", "US {}"),
    ("PHONE", "415-555-0132", "US {}"),
    ("PHONE", "415.555.0132", "US {}"),
    ("PHONE", "020 7946 0958", "London {}"),
    ("PHONE", "07700 900123", "mobile {}"),
    ("PHONE", "01 23 45 67 89", "FR {}"),
    ("PHONE", "0171-1234567", "DE {}"),
    ("CARD", "4111 1111 1111 1111", "visa {} exp 12/29"),
    ("CARD", "4111-1111-1111-1111", "visa {}"),
    ("CARD", "5555555555554444", "mc {}"),
    ("CARD", "2223000048400011", "mc 2-series {}"),
    ("CARD", "378282246310005", "amex {}"),
    ("CARD", "6011111111111117", "discover {}"),
    ("CARD", "3530111333300000", "jcb {}"),
    ("CARD", "30569309025904", "diners {}"),
    ("IBAN", "GB82 WEST 1234 5698 7654 32", "pay to {} please"),
    ("IBAN", "GB82WEST12345698765432", "iban={}"),
    ("IBAN", "DE89 3704 0044 0532 0130 00", "Konto {}."),
    ("IBAN", "FR1420041010050500013M02606", "{}"),
    ("IBAN", "NL91ABNA0417164300", "NL: {}"),
    ("SSN", "123-45-6789", "ssn {}"),
    ("SSN", "665-01-0001", "SSN: {}."),
    ("IPV4", "192.168.0.1", "host {} up"),
    ("IPV4", "8.8.8.8", "dns={}."),
    ("IPV4", "255.255.255.0", "mask {}"),
    ("IPV6", "2001:db8:85a3::8a2e:370:7334", "v6 {} up"),
    ("IPV6", "fe80::1", "link-local {}."),
    ("IPV6", "::ffff:192.0.2.1", "mapped {}"),
    ("IPV6", "2001:0db8:0000:0000:0000:ff00:0042:8329", "[{}]"),
    ("CREDENTIAL", TW_KEY, "key {} here"),
    ("CREDENTIAL", "sk-proj-4fG7hJ9kL2mN5pQ8rS1tU3vW6xY0zA", "OPENAI_API_KEY={}"),
    ("CREDENTIAL", "sk-ant-api03-Xy7_Qw3-Er5tY8uI0oP2aS4dF6gH", "x-api-key: {}"),
    ("CREDENTIAL", "AKIAIOSFODNN7EXAMPLE", "aws {}"),
    ("CREDENTIAL", "ghp_0123456789abcdefghijABCDEFGHIJ012345", "token {}"),
    ("CREDENTIAL", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_abc123", "Authorization: Bearer {}"),
    ("CREDENTIAL", "hunter2!", "password={}"),
    ("CREDENTIAL", "c0rrect-h0rse", '{{"password": "{}"}}'),
    ("CREDENTIAL", "9f8e7d6c5b4a39281706f5e4d3c2b1a0", "api_key = {}"),
    ("CREDENTIAL", "Zq8xW3vB7nM1kL5jH9gF2dS6", "client_secret: '{}'"),
    ("PRIVATE_KEY", PEM, "here is my key:\n{}\nthanks"),
    ("PRIVATE_KEY", "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEF", "truncated paste: {}"),
]

FALSE_POSITIVES = [
    # e-mail look-alikes
    "follow @jane_doe on social", "user@localhost is a local account", "see a@b.c", "pip install pkg@1.2.3",
    "decorate with @property", "version@2 of the lib",
    # phone look-alikes: dates, times, versions, order numbers, plain integers, sums
    "on 2024-01-15 at 10:30", "dated 15.01.2024", "due 01/15/2024", "on 05.06.2024 12.30 sharp",
    "version 10.0.19041.1234", "v1.2.3", "order #12345678", "order no. 0012345678 shipped",
    "invoice 1234567890", "id 98765432101234", "total 1 234 567 EUR", "ISBN 978-3-16-148410-0",
    "+0 12 34 56 78", "3.14159265358979", "000-12-3456 is not a phone",
    # card look-alikes: Luhn failures, unknown issuers, too short or long
    "card 4111 1111 1111 1112", "number 1234567812345670", "tracking 9400111899223100000000",
    "ref 4111-1111 1111-1111", "digits 4111111111111", "count 12345678901234",
    # IBAN look-alikes: bad check digits, unknown country, wrong length
    "GB82 WEST 1234 5698 7654 33", "XX82WEST12345698765432", "DE89 3704 0044 0532 0130", "AB12 CDEF GHIJ",
    # SSN never-issued ranges and other dashed numbers
    "000-12-3456", "666-12-3456", "900-12-3456", "123-00-4567", "123-45-0000", "phone 123-456-7890x",
    # IP look-alikes
    "256.1.1.1", "1.2.3", "1.2.3.4.5", "01.02.03.04", "at 12:30:45", "mac 00:1A:2B:3C:4D:5E",
    "std::vector<int>", "a::b::c", "deadbeef", "ratio 3:2:1",
    # credential look-alikes
    "we use sk-learn", "risk-assessment-framework-for-teams", "the key=value pair", "password: <your password>",
    "token=abc", "password=********", "password=${DB_PASSWORD}", "key=user_profile_settings_table",
    "AKIA is a prefix", "ghp_short", "the bearer of this letter", "Bearer token auth is described in RFC 6750",
    "monkey=banana1234567890abcdef", "api_version=2024-06-01", "-----BEGIN PUBLIC KEY-----",
]


@pytest.mark.parametrize(("kind", "pii", "around"), TRUE_POSITIVES, ids=[f"{k}-{i}" for i, (k, _, _) in
                                                                         enumerate(TRUE_POSITIVES)])
def test_true_positive_found_with_exact_span(kind: str, pii: str, around: str) -> None:
    text = around.format(pii)
    start = text.index(pii)
    found = find_pii(text)
    assert [(m.kind, text[m.start:m.end]) for m in found] == [(kind, pii)]
    assert found[0].start == start
    assert redact(text) == around.format(f"[REDACTED:{kind}]")


@pytest.mark.parametrize("text", FALSE_POSITIVES)
def test_false_positive_not_found(text: str) -> None:
    assert find_pii(text) == [], [(m.kind, text[m.start:m.end]) for m in find_pii(text)]
    assert redact(text) == text


def test_several_kinds_in_one_text_are_redacted_in_order() -> None:
    text = f"Jane (jane@example.com, +44 20 7946 0958) paid with 5555555555554444 from 10.0.0.7 using {TW_KEY}."
    assert redact(text) == ("Jane ([REDACTED:EMAIL], [REDACTED:PHONE]) paid with [REDACTED:CARD] from "
                            "[REDACTED:IPV4] using [REDACTED:CREDENTIAL].")


def test_overlapping_finds_keep_the_earliest_longest() -> None:
    # The IPv4 inside a mapped IPv6 address and the secrets inside a PEM block are not reported twice.
    text = f"::ffff:192.0.2.1 and -----BEGIN PRIVATE KEY-----\n{TW_KEY} jane@example.com\n-----END PRIVATE KEY-----"
    assert [m.kind for m in find_pii(text)] == ["IPV6", "PRIVATE_KEY"]


@pytest.mark.parametrize(("digits", "ok"), [("79927398713", True), ("79927398710", False), ("0", True)])
def test_luhn(digits: str, ok: bool) -> None:
    assert luhn_ok(digits) is ok


def test_card_needs_known_issuer_even_when_luhn_passes() -> None:
    assert luhn_ok("1234567812345670")
    assert not is_card_number("1234567812345670")
    assert is_card_number("4111111111111111")


def test_iban_check() -> None:
    assert is_iban("GB82WEST12345698765432")
    assert not is_iban("GB83WEST12345698765432")
    assert not is_iban("GB82WEST1234569876543")


ADVERSARIAL = [
    "a" * 50_000 + "@",
    "a@" * 20_000,
    "x@" + "a." * 20_000 + "1",
    "1" * 100_000,
    "1 " * 50_000,
    "+1 " * 30_000,
    "(0" * 30_000,
    "1-" * 50_000,
    "1." * 50_000,
    "0 " * 50_000,
    ":" * 50_000 + "1",
    "a:" * 50_000,
    "key=" * 25_000,
    "password " * 10_000,
    "Bearer " * 10_000,
    "-----BEGIN PRIVATE KEY-----" * 3_000,
    "sk-" * 30_000,
    "DE89 " * 20_000,
    ("4111 " * 4 + "x ") * 5_000,
]


@pytest.mark.parametrize("text", ADVERSARIAL, ids=range(len(ADVERSARIAL)))
def test_adversarial_inputs_complete(text: str) -> None:
    # Bounded inputs built to make a backtracking pattern go quadratic or worse; the test only needs them to
    # return (a catastrophic pattern would hang the suite far past its timeout).
    assert isinstance(redact(text), str)
