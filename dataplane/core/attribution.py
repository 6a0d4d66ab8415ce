"""Request attribution: which user, project and tags a request is accounted to.

Pure: ``attribute(key, payload, headers)`` returns an ``Attribution`` or the ``ApiError`` to show.
- user: the OpenAI ``user`` field of the body, or the ``x-tollway-user`` header (both may be sent only if they
  agree); printable, at most ``MAX_USER_LEN`` characters. Per-user budgets and rate limits key on it.
- project: the ``x-tollway-project`` header, else the key's own project ("" when the key has none). It must be
  one of the tenant's projects (400 ``unknown_project``) and, for a key bound to a project, that project
  (403 ``project_not_allowed``): a key cannot spend another project's budget.
- tags: ``x-tollway-tags``, comma-separated; at most ``MAX_TAGS`` distinct tags of ``TAG_RE`` (letters, digits
  and ``._:=/-``, up to 64 characters), kept in first-seen order. Tags label usage records; they grant nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from dataplane.errors import ApiError, invalid, quoted
from dataplane.snapshot.runtime import Key

USER_HEADER = "x-tollway-user"
PROJECT_HEADER = "x-tollway-project"
TAGS_HEADER = "x-tollway-tags"
MAX_USER_LEN = 256
MAX_TAGS = 16
MAX_TAGS_HEADER_LEN = 2048
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:=/-]{0,63}$")


@dataclass(unsafe_hash=True)
class Attribution:
    """Who a request is accounted to. Immutable; "" means none."""

    user: Final[str]
    project: Final[str]
    tags: Final[tuple[str, ...]]

    def __init__(self, user: str = "", project: str = "", tags: tuple[str, ...] = ()) -> None:
        self.user = user
        self.project = project
        self.tags = tags


NOBODY = Attribution()


def attribute(key: Key, payload: Mapping[str, Any], headers: Mapping[str, str]) -> Attribution | ApiError:
    """The attribution of a request made with ``key`` (headers: case-insensitive, as aiohttp's are)."""
    user = user_of(payload, headers.get(USER_HEADER))
    if isinstance(user, ApiError):
        return user
    project = project_of(key, headers.get(PROJECT_HEADER))
    if isinstance(project, ApiError):
        return project
    raw_tags = headers.get(TAGS_HEADER)
    tags = parse_tags(raw_tags) if raw_tags is not None else ()
    if isinstance(tags, ApiError):
        return tags
    if not user and not project and not tags:
        return NOBODY
    return Attribution(user, project, tags)


def user_of(payload: Mapping[str, Any], header: str | None) -> str | ApiError:
    body_user = payload.get("user")
    if body_user is not None and not isinstance(body_user, str):
        return invalid("'user' must be a string", "user")
    if header is not None:
        header = header.strip()
    user = body_user or header or ""
    if body_user and header and body_user != header:
        return invalid(f"the 'user' field and the {USER_HEADER} header name different users", "user",
                       "conflicting_user")
    if len(user) > MAX_USER_LEN:
        return invalid(f"the user must be at most {MAX_USER_LEN} characters", "user", "invalid_user")
    if not user.isprintable():
        return invalid("the user may not contain control characters", "user", "invalid_user")
    return user


def project_of(key: Key, header: str | None) -> str | ApiError:
    if header is None or not header.strip():
        return key.project
    project = header.strip()
    if project not in key.tenant.projects:
        return invalid(f"project {quoted(project)} is not a project of tenant {key.tenant.name!r} "
                       f"(set by the {PROJECT_HEADER} header)", None, "unknown_project")
    if key.project and project != key.project:
        return ApiError(403, f"this API key may only be used for project {key.project!r}, not {project!r}",
                        "permission_error", "project_not_allowed")
    return project


def parse_tags(header: str) -> tuple[str, ...] | ApiError:
    if len(header) > MAX_TAGS_HEADER_LEN:
        return invalid(f"the {TAGS_HEADER} header is longer than {MAX_TAGS_HEADER_LEN} characters", None,
                       "invalid_tags")
    tags: dict[str, None] = {}  # an ordered set
    for part in header.split(","):
        tag = part.strip()
        if not tag:
            continue
        if not TAG_RE.match(tag):
            return invalid(f"tag {quoted(tag)} in the {TAGS_HEADER} header is not valid: tags are 1 to 64 letters, "
                           "digits and ._:=/- starting with a letter or digit", None, "invalid_tags")
        tags[tag] = None
    if len(tags) > MAX_TAGS:
        return invalid(f"the {TAGS_HEADER} header carries {len(tags)} tags; at most {MAX_TAGS} are allowed", None,
                       "invalid_tags")
    return tuple(tags)
