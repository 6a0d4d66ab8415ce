"""Request attribution (``dataplane.core.attribution``): user, project and tags, validated against the key."""

from __future__ import annotations

from typing import Any

import pytest

from dataplane.core.attribution import MAX_TAGS, Attribution, attribute
from dataplane.errors import ApiError
from dataplane.snapshot.runtime import Key, Runtime
from tests.ratelimit.limits_snapshot import limited_snapshot
from tollway.keyformat import hash_key

pytestmark = pytest.mark.pure


@pytest.fixture(scope="module")
def keys() -> dict[str, Key]:
    snap, k = limited_snapshot()
    runtime = Runtime.from_snapshot(snap)
    bound = runtime.keys[hash_key(k.acme_all)]  # tenant acme, bound to project web
    free = runtime.keys[hash_key(k.acme_mock)]  # tenant acme, any project
    return {"bound": bound, "free": free}


CASES: list[tuple[str, str, dict[str, Any], dict[str, str], Attribution | tuple[int, str]]] = [
    ("nothing", "free", {}, {}, Attribution()),
    ("key's project by default", "bound", {}, {}, Attribution(project="web")),
    ("user field", "free", {"user": "alice"}, {}, Attribution(user="alice")),
    ("user header", "free", {}, {"x-tollway-user": " bob "}, Attribution(user="bob")),
    ("field and header agree", "free", {"user": "bob"}, {"x-tollway-user": "bob"}, Attribution(user="bob")),
    ("field and header differ", "free", {"user": "alice"}, {"x-tollway-user": "bob"}, (400, "conflicting_user")),
    ("user too long", "free", {"user": "u" * 257}, {}, (400, "invalid_user")),
    ("user with a control character", "free", {"user": "a\nb"}, {}, (400, "invalid_user")),
    ("project header", "free", {}, {"x-tollway-project": "mobile"}, Attribution(project="mobile")),
    ("bound key, its own project", "bound", {}, {"x-tollway-project": "web"}, Attribution(project="web")),
    ("bound key, another project", "bound", {}, {"x-tollway-project": "mobile"}, (403, "project_not_allowed")),
    ("unknown project", "free", {}, {"x-tollway-project": "nope"}, (400, "unknown_project")),
    ("unknown project, bound key", "bound", {}, {"x-tollway-project": "nope"}, (400, "unknown_project")),
    ("tags", "free", {}, {"x-tollway-tags": "search, env=prod,team:ml,,search"},
     Attribution(tags=("search", "env=prod", "team:ml"))),
    ("bad tag charset", "free", {}, {"x-tollway-tags": "ok,not ok"}, (400, "invalid_tags")),
    ("tag too long", "free", {}, {"x-tollway-tags": "t" * 65}, (400, "invalid_tags")),
    ("tag starting with a dash", "free", {}, {"x-tollway-tags": "-x"}, (400, "invalid_tags")),
    ("too many tags", "free", {}, {"x-tollway-tags": ",".join(f"t{i}" for i in range(MAX_TAGS + 1))},
     (400, "invalid_tags")),
    ("max tags", "free", {}, {"x-tollway-tags": ",".join(f"t{i}" for i in range(MAX_TAGS))},
     Attribution(tags=tuple(f"t{i}" for i in range(MAX_TAGS)))),
    ("everything", "bound", {"user": "carol"}, {"x-tollway-project": "web", "x-tollway-tags": "a"},
     Attribution("carol", "web", ("a",))),
]


@pytest.mark.parametrize(("key", "payload", "headers", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_attribute(keys: dict[str, Key], key: str, payload: dict[str, Any], headers: dict[str, str],
                   expected: Attribution | tuple[int, str]) -> None:
    got = attribute(keys[key], payload, headers)
    if isinstance(expected, Attribution):
        assert got == expected
    else:
        assert isinstance(got, ApiError)
        assert (got.status, got.code) == expected
        assert got.type == ("permission_error" if got.status == 403 else "invalid_request_error")


def test_errors_name_the_problem_without_echoing_long_values(keys: dict[str, Key]) -> None:
    got = attribute(keys["bound"], {}, {"x-tollway-project": "mobile"})
    assert isinstance(got, ApiError)
    assert got.message == "this API key may only be used for project 'web', not 'mobile'"
    got = attribute(keys["free"], {}, {"x-tollway-project": "p" * 1000})
    assert isinstance(got, ApiError)
    assert len(got.message) < 200 and "is not a project of tenant 'acme'" in got.message
