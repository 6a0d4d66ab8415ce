"""The audit log: the policy history as a hash chain, so that an entry edited in the store is noticed.

Every policy write already stores one history entry in the same transaction as the change
(``controlplane.policy.repository``). ``seal`` adds two fields to it before it is written:

- ``prev``: the ``hash`` of the entry before it (entry 1: ``GENESIS``),
- ``hash``: the sha256 of the entry's canonical bytes (``canonical_bytes``: sorted-key JSON of every field but
  ``hash`` itself, ``prev`` included).

The generation key (``/tollway/meta/generation``) records the newest entry's hash as ``head``, written in the
same transaction. ``verify`` walks the entries from revision 1 and reports the first one that fails: content
that no longer matches its hash, a ``prev`` that does not match the entry before (that one was rewritten with a
recomputed hash, removed or replaced), a missing revision, or a newest entry that is not the recorded head.

What this cannot catch: someone with write access to the store who rewrites an entry *and* every later entry
*and* the head. Against that, record the head elsewhere (``gatectl audit verify`` prints it) and check that it
is still in the chain later (``--expect``). Entries written before the chain existed (no ``hash``) are accepted
only as a prefix: once one entry is sealed, every later one must be.

Pure except for ``read_chain`` (one store listing) and the HTTP handlers at the bottom, which are the shell.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from controlplane.errors import Conflict, InvalidRequest, is_count
from controlplane.policy import engine
from controlplane.store.base import Store
from controlplane.store.layout import GENERATION, HISTORY

GENESIS = hashlib.sha256(b"tollway audit log genesis").hexdigest()
_READ_ATTEMPTS = 5


def canonical_bytes(entry: Mapping[str, Any]) -> bytes:
    """The bytes an entry's hash covers: sorted-key JSON of every field except ``hash``."""
    return orjson.dumps({k: v for k, v in entry.items() if k != "hash"}, option=orjson.OPT_SORT_KEYS)


def entry_hash(entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(entry)).hexdigest()


def seal(entry: Mapping[str, Any], prev: str) -> dict[str, Any]:
    """``entry`` chained to ``prev`` (the previous entry's hash, or ``GENESIS``), with its own ``hash``."""
    sealed = {**entry, "prev": prev}
    sealed["hash"] = entry_hash(sealed)
    return sealed


def head_of(generation_value: bytes | None) -> str | None:
    """The ``head`` recorded in the generation key's value, if any."""
    if generation_value is None:
        return None
    try:
        head = orjson.loads(generation_value).get("head")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return head if isinstance(head, str) else None


@dataclass(frozen=True)
class RawEntry:
    """One history entry as stored: its revision (from the key) and bytes, untrusted."""

    revision: int
    value: bytes


@dataclass(frozen=True)
class Chain:
    """The whole log read at one store revision: the entries oldest first, the generation and its head."""

    entries: tuple[RawEntry, ...]
    generation: int
    head: str | None


@dataclass(frozen=True)
class ChainBreak:
    revision: int
    reason: str


@dataclass(frozen=True)
class Verification:
    """``entries`` checked; ``head`` the hash of the newest one; ``unchained``: a prefix written before sealing."""

    entries: int
    head: str
    unchained: int
    broken: ChainBreak | None

    @property
    def ok(self) -> bool:
        return self.broken is None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "entries": self.entries, "head": self.head, "unchained": self.unchained,
            "break": None if self.broken is None else {"revision": self.broken.revision,
                                                       "reason": self.broken.reason},
        }


def decode(raw: RawEntry) -> dict[str, Any] | None:
    """The entry as JSON, or None when the stored bytes are not a JSON object (which ``verify`` reports)."""
    try:
        value = orjson.loads(raw.value)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def verify(chain: Chain) -> Verification:
    """Check the chain from revision 1 to ``chain.generation``; the first failure is reported, naming its revision."""
    prev = GENESIS
    sealed_seen = False
    unchained = 0
    count = 0

    def result(broken: ChainBreak | None) -> Verification:
        return Verification(count, prev, unchained, broken)

    expected_revision = 1
    for raw in chain.entries:
        if raw.revision != expected_revision:
            return result(ChainBreak(expected_revision, f"revision {expected_revision} is missing from the log"))
        entry = decode(raw)
        if entry is None:
            return result(ChainBreak(raw.revision, f"revision {raw.revision} is not a JSON object"))
        if entry.get("revision") != raw.revision:
            return result(ChainBreak(raw.revision, f"revision {raw.revision} claims to be revision "
                                                   f"{entry.get('revision')!r}"))
        if "hash" not in entry:
            if sealed_seen:
                return result(ChainBreak(raw.revision, f"revision {raw.revision} carries no hash, but revisions "
                                                       "before it do (its hash was stripped)"))
            unchained += 1
        else:
            sealed_seen = True
            if entry_hash(entry) != entry["hash"]:
                return result(ChainBreak(raw.revision, f"revision {raw.revision} was altered after it was "
                                                       "written: its content does not match its hash"))
            if entry.get("prev") != prev:
                before = f"revision {raw.revision - 1}" if raw.revision > 1 else "the genesis"
                return result(ChainBreak(raw.revision, f"revision {raw.revision} does not chain to {before}: "
                                                       f"{before} was rewritten, replaced or removed"))
        prev = entry_hash(entry)
        count += 1
        expected_revision += 1
    if chain.generation >= expected_revision:
        return result(ChainBreak(expected_revision, f"revision {expected_revision} is missing from the log "
                                                    f"(the policy is at revision {chain.generation})"))
    if chain.head is not None and chain.head != prev:
        return result(ChainBreak(chain.generation, f"revision {chain.generation} (the newest) is not the entry "
                                                   "the policy's generation recorded as its head"))
    if chain.head is None and sealed_seen:
        return result(ChainBreak(chain.generation, "the policy's generation records no head although the log "
                                                   "is sealed: the generation key was rewritten"))
    return result(None)


async def read_chain(store: Store) -> Chain:
    """Every history entry and the generation, consistent with each other (see ``Repository.state``)."""
    for _ in range(_READ_ATTEMPTS):
        listing = await store.list(HISTORY)
        gen = await store.get(GENERATION)
        if gen is None or gen.mod_revision <= listing.revision:
            break
    else:
        raise Conflict("the policy kept changing while the audit log was being read; try again")
    entries = []
    for kv in listing.items:
        suffix = kv.key.removeprefix(HISTORY)
        # A key that is not a revision number was not written by the control plane: report it as revision 0.
        entries.append(RawEntry(int(suffix) if suffix.isdigit() else 0, kv.value))
    generation = 0
    if gen is not None:
        try:
            generation = int(orjson.loads(gen.value)["generation"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            generation = 0
    return Chain(tuple(entries), generation, head_of(gen.value if gen is not None else None))


def listing(chain: Chain, *, diff: bool, limit: int | None) -> list[dict[str, Any]]:
    """What ``GET /admin/v1/audit`` shows of each entry, newest first; ``diff`` adds each change's unified diff."""
    out: list[dict[str, Any]] = []
    for raw in reversed(chain.entries):
        if limit is not None and len(out) >= limit:
            break
        entry = decode(raw)
        if entry is None:
            out.append({"revision": raw.revision, "unreadable": True})
            continue
        changes = []
        for c in entry.get("changes") or []:
            if not isinstance(c, dict):
                continue
            shown = {"op": c.get("op"), "kind": c.get("kind"), "name": c.get("name")}
            if diff:
                shown["diff"] = engine.diff_text(str(c.get("kind")), str(c.get("name")), c.get("before"),
                                                 c.get("after"))
            changes.append(shown)
        shown_entry = {"revision": entry.get("revision", raw.revision), "time": entry.get("time"),
                       "who": entry.get("who"), "hash": entry.get("hash"), "prev": entry.get("prev"),
                       "changes": changes}
        for extra in ("action", "rollout"):  # rollout-start/-promote/-abort entries say so (and which canary)
            if extra in entry:
                shown_entry[extra] = entry[extra]
        out.append(shown_entry)
    return out


STORE = web.AppKey("audit_store", Store)


def _flag(query: Mapping[str, str], name: str) -> bool:
    return query.get(name, "").lower() in ("1", "true", "yes")


async def _audit(request: web.Request) -> web.Response:
    limit = request.query.get("limit")
    if limit is not None and not is_count(limit):
        raise InvalidRequest("'limit' must be a positive number")
    chain = await read_chain(request.app[STORE])
    body = {"items": listing(chain, diff=_flag(request.query, "diff"), limit=int(limit) if limit else None),
            "verification": verify(chain).to_json()}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def _verify(request: web.Request) -> web.Response:
    chain = await read_chain(request.app[STORE])
    hashes: Sequence[str] = [str(e.get("hash")) for e in map(decode, chain.entries) if e and "hash" in e]
    body: dict[str, Any] = {"verification": verify(chain).to_json()}
    expect = request.query.get("expect")
    if expect is not None:
        body["expectFound"] = expect in hashes
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def add_audit_routes(app: web.Application, store: Store) -> None:
    """``GET /admin/v1/audit`` (``?diff=true``, ``?limit=N``) and ``GET /admin/v1/audit/verify`` (``?expect=HASH``)."""
    app[STORE] = store
    app.router.add_get("/admin/v1/audit", _audit)
    app.router.add_get("/admin/v1/audit/verify", _verify)
