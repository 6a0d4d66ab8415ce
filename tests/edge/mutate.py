"""Seeded mutations of valid request bodies, for the fuzz tests of ``tests.edge``. Pure: no I/O, no clock.

A body is a JSON tree whose leaves may be ``Raw`` (JSON text serialized as it is, for what Python values cannot
say: ``1e400``, a number of 5,000 digits, invalid UTF-8, a raw NUL byte). Two families:

- ``tree_mutations``: every node of the tree (the root included) replaced, in turn, by a value of each JSON kind
  (null, bool, number, string, list, object), each value drawn from a pool of awkward ones; strings also include
  the body's own strings, so a ``"type"`` becomes another block's type and blocks get the wrong shape.
- ``byte_mutations``: what a tree cannot hold: deep nesting, huge and odd numbers, invalid UTF-8 and NUL bytes in
  strings, truncated or decorated bodies, bodies that are not objects.

A ``Mutation`` names what was changed (``describe``), so a failure can be reproduced by hand.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

Path = tuple[str | int, ...]
KINDS = ("null", "bool", "number", "string", "list", "object")


@dataclass(frozen=True, slots=True)
class Mutation:
    describe: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Raw:
    """JSON text put into the body as it is (``dumps`` writes it through ``orjson.Fragment``)."""

    text: bytes


def _fragment(value: Any) -> orjson.Fragment:
    if isinstance(value, Raw):
        return orjson.Fragment(value.text)
    raise TypeError(type(value).__name__)


def dumps(tree: Any) -> bytes:
    """The body's bytes; ``Raw`` leaves written verbatim."""
    return orjson.dumps(tree, default=_fragment, option=orjson.OPT_PASSTHROUGH_DATACLASS)


NUMBERS: tuple[Any, ...] = (
    0, -1, 1, 2, 7.5, -0.0, 1e-9, 2**31, 2**63 - 1, -(2**63), 2**64 - 1, 1e308, -1e308,
    Raw(b"1e400"), Raw(b"-1e400"), Raw(b"1e-400"), Raw(b"1" + b"0" * 5000), Raw(b"-" + b"9" * 5000),
    Raw(b"18446744073709551616"), Raw(b"-9223372036854775809"), Raw(b"1E+2"), Raw(b"-0"), Raw(b"0.0000001"),
)
STRINGS: tuple[Any, ...] = (
    "", " ", "x", "\u0000", "a\u0000b", "²", "٣", "\uff15", "\U0001d7d7", "-1", "1e400", "1e999999999",
    "-1e-999999999", "NaN", "Infinity", "0.0000001", "9" * 5000, "null", "true", "{}", "[]",
    "\u202e", "\ufeff", "é" * 3, "x" * 20_000, "data:image/png;base64,", "data:;base64,%%%", "http://", "file:///etc",
    "base64", "url", "function", "auto", "required", "none", "json_schema", "json_object", "tool_use", "image",
    Raw(b'"\\ud800"'), Raw(b'"\\udfff\\ud800"'), Raw(b'"a\\u0000"'),
)
LISTS: tuple[Any, ...] = (
    [], [None], [0], [""], [{}], [[]], ["x", 1, None], [{"type": "text", "text": "x"}], [{"type": "image_url"}],
    [{"type": None}], [[[[[]]]]], [{"role": "user"}], [{"type": "function"}], [{"type": "tool_use", "input": "x"}],
    list(range(300)),
)
OBJECTS: tuple[Any, ...] = (
    {}, {"a": None}, {"type": "x"}, {"type": "text"}, {"type": None}, {"type": 1}, {"": ""},
    {"type": "image", "source": "x"}, {"type": "function", "function": "x"}, {"type": "json_schema"},
    {"type": "base64", "data": 1, "media_type": None}, {"url": {"url": "x"}}, {"role": "user", "content": {}},
    {"type": "tool_use", "id": None, "name": 1, "input": []}, {"0": [1], "1": {"2": {}}},
)


def nodes(tree: Any, path: Path = ()) -> Iterator[Path]:
    """Every node's path, pre-order, the root's (``()``) first."""
    yield path
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from nodes(v, (*path, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from nodes(v, (*path, i))


def strings_of(tree: Any) -> list[str]:
    """The string leaves of ``tree`` (and its keys), once each, in order."""
    seen: dict[str, None] = {}
    for path in nodes(tree):
        value = at(tree, path)
        if isinstance(value, str):
            seen[value] = None
        if path and isinstance(path[-1], str):
            seen[path[-1]] = None
    return list(seen)


def at(tree: Any, path: Path) -> Any:
    for step in path:
        tree = tree[step]
    return tree


def replaced(tree: Any, path: Path, value: Any) -> Any:
    """A copy of ``tree`` with the node at ``path`` replaced by ``value``; containers off the path are shared."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(tree, dict):
        return {**tree, head: replaced(tree[head], rest, value)}
    copy = list(tree)
    assert isinstance(head, int)
    copy[head] = replaced(copy[head], rest, value)
    return copy


def dotted(path: Path) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else f".{step}" if text else step
    return text or "<body>"


def short(value: Any) -> str:
    text = value.text.decode(errors="replace") if isinstance(value, Raw) else repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def value_of(kind: str, rng: random.Random, own_strings: list[str]) -> Any:
    if kind == "null":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "number":
        return rng.choice(NUMBERS)
    if kind == "string":
        return rng.choice(own_strings) if own_strings and rng.random() < 0.4 else rng.choice(STRINGS)
    if kind == "list":
        return rng.choice(LISTS)
    return rng.choice(OBJECTS)


def tree_mutations(base: Any, rng: random.Random) -> Iterator[Mutation]:
    """Each node of ``base`` replaced by a value of each of the six JSON kinds: ``6 * len(nodes)`` mutations."""
    own = strings_of(base)
    for path in nodes(base):
        for kind in KINDS:
            value = value_of(kind, rng, own)
            yield Mutation(f"{dotted(path)} := {short(value)}", dumps(replaced(base, path, value)))


def _nested(depth: int, rng: random.Random) -> Raw:
    if rng.random() < 0.5:
        return Raw(b"[" * depth + b"]" * depth)
    return Raw(b'{"a":' * depth + b"{}" + b"}" * depth)


BAD_UTF8 = (b"\xff", b"\xc3\x28", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\x80")


def byte_mutations(base: Any, rng: random.Random, count: int) -> Iterator[Mutation]:
    """``count`` mutations of the serialized body at random places: deep nesting, huge numbers, invalid UTF-8,
    NUL bytes, broken framing of the JSON text."""
    paths = list(nodes(base))
    leaves = [p for p in paths if isinstance(at(base, p), str)] or paths
    text = dumps(base)
    for _ in range(count):
        choice = rng.randrange(9)
        if choice == 0:
            path, depth = rng.choice(paths), rng.choice((65, 200, 1023, 1100, 100_000))
            value: Any = _nested(depth, rng)
            yield Mutation(f"{dotted(path)} := nested {depth} deep", dumps(replaced(base, path, value)))
        elif choice == 1:
            path, value = rng.choice(paths), rng.choice([n for n in NUMBERS if isinstance(n, Raw)])
            yield Mutation(f"{dotted(path)} := {short(value)}", dumps(replaced(base, path, value)))
        elif choice == 2:
            path, bad = rng.choice(leaves), rng.choice(BAD_UTF8)
            value = Raw(b'"ok' + bad + b'ok"')
            yield Mutation(f"{dotted(path)} := invalid UTF-8 {bad!r}", dumps(replaced(base, path, value)))
        elif choice == 3:
            path = rng.choice(leaves)
            value = Raw(b'"a\x00b"') if rng.random() < 0.5 else "a\u0000b" * rng.choice((1, 1000))
            yield Mutation(f"{dotted(path)} := NUL {short(value)}", dumps(replaced(base, path, value)))
        elif choice == 4:
            cut = rng.randrange(len(text))
            yield Mutation(f"truncated at {cut}", text[:cut])
        elif choice == 5:
            at_, junk = rng.randrange(len(text)), rng.choice((b"\x00", b"\xff", b",", b"}", b"]", b'"', b"\\"))
            yield Mutation(f"{junk!r} inserted at {at_}", text[:at_] + junk + text[at_:])
        elif choice == 6:
            decorated = rng.choice((b"\xef\xbb\xbf" + text, text + b"garbage", text + b"\x00", b" \n" + text + b"\n",
                                    text + text, b"\xff\xfe" + text))
            yield Mutation(f"decorated {decorated[:4]!r}...{decorated[-8:]!r}", decorated)
        elif choice == 7:
            whole = rng.choice((b"", b"null", b"[]", b"0", b'"x"', b"{}", b"[{}]", b"\x00", b"\xff" * 8, b"{" * 5000))
            yield Mutation(f"body := {whole[:20]!r}", whole)
        else:  # a duplicate key: the later one wins in orjson, the earlier in some parsers
            key = rng.choice(list(base) if isinstance(base, dict) and base else ["model"])
            dup = b"{" + orjson.dumps(key) + b":" + orjson.dumps(rng.choice((None, 1, "x", [], {}))) + b"," + text[1:]
            yield Mutation(f"duplicate key {key!r} first", dup)
