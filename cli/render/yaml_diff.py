"""``gatectl diff``'s rendering: each change as a unified diff of YAML documents, like ``kubectl diff``. Pure.

The control plane answers a dry-run apply with each change's canonical ``before`` and ``after`` (the documents
as it stores them, ``None`` for an absent side); both are rendered as the YAML ``get -o yaml`` prints (envelope
first) and compared line by line, one ``---``/``+++`` header per document: ``a/Kind/name`` and ``b/Kind/name``,
``/dev/null`` for a document created or deleted.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from cli.render.output import to_yaml_documents


def yaml_lines(document: Mapping[str, Any] | None) -> list[str]:
    return to_yaml_documents([document]).splitlines(keepends=True) if document is not None else []


def change_diff(change: Mapping[str, Any]) -> str:
    """One change of a dry-run answer as a unified YAML diff; the server's own diff text when it sent no bodies
    (an older control plane), or ``op Kind/name`` when it sent neither."""
    kind, name = change.get("kind"), change.get("name")
    if "before" in change or "after" in change:
        before, after = change.get("before"), change.get("after")
        old = yaml_lines(before if isinstance(before, Mapping) else None)
        new = yaml_lines(after if isinstance(after, Mapping) else None)
        a = f"a/{kind}/{name}" if old else "/dev/null"
        b = f"b/{kind}/{name}" if new else "/dev/null"
        text = "".join(difflib.unified_diff(old, new, fromfile=a, tofile=b))
    else:
        text = str(change.get("diff") or "")
    if not text:
        text = f"{change.get('op')} {kind}/{name}\n"
    return text if text.endswith("\n") else text + "\n"
