"""A "nothing sensitive leaks" scanner for tests: find any of a run's secrets in what the run produced.

Give it the secrets a run used (prompts, responses, client keys, upstream credentials), labelled, and the places
to search: files, directories (every file below, recursively) and in-memory texts (HTTP bodies, metric pages,
rows read from DuckDB). Each secret is searched raw (as UTF-8 bytes), as it appears inside a JSON string (escaped
quotes, newlines, non-ASCII), URL-encoded, and base64-encoded on its own.

Reports name the secret by its label and the place by path or label plus byte offset, never quoting the secret,
so a failing assertion does not itself leak. Binary stores may compress strings (DuckDB does): query them and
pass the rows as text rather than scanning the database file.

    leaks = scan({"prompt": prompt, "client key": key}, [log_dir, ("metrics", metrics_text)])
    assert_no_leaks({"prompt": prompt}, [log_dir])
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson

MIN_SECRET_LEN = 8  # shorter needles would match by chance and make the scan meaningless

Source = Path | tuple[str, str | bytes]


@dataclass(frozen=True, slots=True)
class Leak:
    secret: str  # the label of the secret, not the secret
    form: str  # raw | json | url | base64
    where: str  # file path or source label
    offset: int  # byte offset of the occurrence

    def __str__(self) -> str:
        return f"{self.secret} ({self.form}) found in {self.where} at byte {self.offset}"


def _forms(secret: str) -> dict[str, bytes]:
    raw = secret.encode("utf-8")
    forms = {
        "raw": raw,
        "json": orjson.dumps(secret)[1:-1],
        "json-ascii": json.dumps(secret)[1:-1].encode("ascii"),
        "url": urllib.parse.quote(secret, safe="").encode("ascii"),
        "url-plus": urllib.parse.quote_plus(secret).encode("ascii"),
        "base64": base64.b64encode(raw),
    }
    unique: dict[str, bytes] = {}
    for name, needle in forms.items():
        if needle not in unique.values():
            unique[name] = needle
    return unique


def _blobs(sources: Iterable[Source]) -> Iterator[tuple[str, bytes]]:
    for src in sources:
        if isinstance(src, tuple):
            label, data = src
            yield label, data.encode("utf-8") if isinstance(data, str) else data
        elif src.is_dir():
            for path in sorted(p for p in src.rglob("*") if p.is_file()):
                yield str(path), path.read_bytes()
        elif src.is_file():
            yield str(src), src.read_bytes()


def scan(secrets: Mapping[str, str], sources: Iterable[Source]) -> list[Leak]:
    """Every occurrence of every secret (in every form) in the sources; empty when nothing leaked."""
    needles: list[tuple[str, str, bytes]] = []
    for label, secret in secrets.items():
        if len(secret) < MIN_SECRET_LEN:
            raise ValueError(f"secret {label!r} is shorter than {MIN_SECRET_LEN} characters: use a distinctive one")
        needles.extend((label, form, needle) for form, needle in _forms(secret).items())
    leaks: list[Leak] = []
    for where, blob in _blobs(sources):
        for label, form, needle in needles:
            at = blob.find(needle)
            while at != -1:
                leaks.append(Leak(label, form, where, at))
                at = blob.find(needle, at + 1)
    return leaks


def assert_no_leaks(secrets: Mapping[str, str], sources: Iterable[Source]) -> None:
    leaks = scan(secrets, sources)
    assert not leaks, "sensitive values leaked:\n" + "\n".join(f"  {leak}" for leak in leaks)
