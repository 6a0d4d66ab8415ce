"""Nothing sensitive leaks into the request log unless the mode allows content; and the scanner finds leaks."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pytest

from dataplane.core.content import ContentKey
from dataplane.record.request_log import RequestLog, Served, open_sink
from dataplane.snapshot.runtime import ContentPolicy
from tests.dataplane.snapshots import CREDENTIAL
from tests.observability.leakscan import Leak, assert_no_leaks, scan
from tests.observability.test_request_log_writer import make_outcome

HASH_KEY = "content-hash-key-which-is-secret-42"
PROMPT = "Please draft a letter to Mr Quibbleworth about the Zanzibar merger"
ANSWER = "Dear Mr Quibbleworth, regarding Zanzibar: the merger is approved."


async def run_log(path: Path, mode: str) -> None:
    rlog = RequestLog(open_sink(str(path)), "eu", "n", ContentKey(HASH_KEY.encode()), flush_interval_s=0.01)
    rlog.start()
    outcome = make_outcome(prompt=PROMPT)
    rlog.emit(Served(outcome, ContentPolicy(mode), {"role": "assistant", "content": ANSWER}))  # type: ignore[arg-type]
    await rlog.stop()


@pytest.mark.parametrize("mode", ["none", "hashed", "redacted", "full"])
async def test_request_log_leaks_content_only_in_full_and_never_keys(tmp_path: Path, mode: str) -> None:
    await run_log(tmp_path / "requests.jsonl", mode)
    always_secret = {"upstream credential": CREDENTIAL, "content hash key": HASH_KEY}
    assert_no_leaks(always_secret, [tmp_path])
    content = {"prompt": PROMPT, "response": ANSWER}
    leaks = scan(content, [tmp_path])
    if mode == "full":
        assert {leak.secret for leak in leaks} == {"prompt", "response"}
    elif mode == "redacted":
        # No PII in this prompt, so redaction keeps it: "redacted" is for PII, not for confidentiality.
        assert {leak.secret for leak in leaks} == {"prompt", "response"}
    else:
        assert leaks == []


def test_scanner_finds_every_form_and_never_quotes_the_secret(tmp_path: Path) -> None:
    secret = 'line one\n"quoted" café'
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.log").write_bytes(b"xx" + orjson.dumps({"m": secret}))
    (tmp_path / "b.bin").write_bytes(b"\x00" + base64.b64encode(secret.encode()) + b"\x00" + secret.encode())
    leaks = scan({"the prompt": secret}, [tmp_path, ("metrics", "nothing here"), ("body", b"..." + b"caf\\u00e9")])
    assert {(leak.form, Path(leak.where).name) for leak in leaks} == {
        ("json", "a.log"), ("base64", "b.bin"), ("raw", "b.bin"),
    }
    assert all(secret not in str(leak) for leak in leaks)
    assert Leak("the prompt", "raw", "x", 3).__str__() == "the prompt (raw) found in x at byte 3"
    with pytest.raises(AssertionError) as failure:
        assert_no_leaks({"the prompt": secret}, [tmp_path])
    assert secret not in str(failure.value) and "the prompt" in str(failure.value)


def test_scanner_json_ascii_and_url_forms() -> None:
    secret = "naïve secret/42?"
    sources: list[tuple[str, str | bytes]] = [
        ("python-json", '{"p": "na\\u00efve secret/42?"}'),
        ("query", "GET /?q=na%C3%AFve%20secret%2F42%3F"),
        ("form", "q=na%C3%AFve+secret%2F42%3F"),
    ]
    assert {leak.where for leak in scan({"s": secret}, sources)} == {"python-json", "query", "form"}


def test_scanner_refuses_short_secrets() -> None:
    with pytest.raises(ValueError, match="shorter"):
        scan({"pin": "1234"}, [])
