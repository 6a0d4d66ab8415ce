"""The mock providers that ``gatectl up`` runs in place of the real ones, and the guard that keeps them in place.

``gatectl up`` rewrites every Provider to ``type: mock`` and labels it ``tollway.dev/gatectl-up: <type written>``.
A later ``gatectl apply -f policies/`` against that gateway would swap the mocks for the real providers, which
need credentials and the internet that a local gateway usually lacks, so ``apply`` refuses it (with a hint)
unless ``--real-providers`` confirms. Providers the user wrote as ``mock`` carry no label and are never guarded.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from cli.client import AdminClient
from cli.documents import LoadedDocument
from cli.errors import Problem, UsageError

STAND_IN_LABEL = "tollway.dev/gatectl-up"


def as_stand_in(document: Mapping[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The Provider ``document`` as ``gatectl up`` runs it: ``spec`` (already ``type: mock``), labelled with the
    type it stands in for."""
    written = str((document.get("spec") or {}).get("type") or "mock")
    metadata = dict(document.get("metadata") or {})
    metadata["labels"] = {**dict(metadata.get("labels") or {}), STAND_IN_LABEL: written}
    return {**document, "metadata": metadata, "spec": spec}


def is_real(document: LoadedDocument) -> bool:
    return document.kind == "Provider" and (document.document.get("spec") or {}).get("type") != "mock"


def swapped_stand_ins(documents: Sequence[LoadedDocument], current: Sequence[Mapping[str, Any]]) -> list[Problem]:
    """One problem per document that would replace a ``gatectl up`` stand-in with a real provider."""
    stand_ins = {
        str((p.get("metadata") or {}).get("name")) for p in current
        if (p.get("spec") or {}).get("type") == "mock" and STAND_IN_LABEL in ((p.get("metadata") or {}).get("labels")
                                                                              or {})
    }
    return [
        Problem(d.file, d.index, d.kind, d.name, "spec.type",
                f"{d.document['spec'].get('type')!r} would replace the mock provider that `gatectl up` runs in its "
                "place")
        for d in documents if is_real(d) and d.name in stand_ins
    ]


class RealProvidersRefused(UsageError):
    """``apply`` would swap the mock providers of a ``gatectl up`` gateway for real ones; nothing was sent."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__(f"{len(problems)} provider(s) would stop being mocks; nothing was sent")
        self.problems = tuple(problems)

    def lines(self) -> list[str]:
        return [f"error: {p}" for p in self.problems] + [
            f"error: {self}",
            "hint: this gateway was started by `gatectl up` with mock providers; real ones need their credentials "
            "and the internet. Restart `gatectl up` to apply edited policy with mock providers (or `gatectl up "
            "--real-providers`), apply only the files without Providers, or pass --real-providers to swap them.",
        ]


def keep_stand_ins(client: AdminClient, documents: Sequence[LoadedDocument], dry_run: bool) -> None:
    """Refuse to swap the mock providers of a ``gatectl up`` gateway for real ones; on a dry run (which writes
    nothing) say so as warnings instead. Asks the control plane only when a document is a real Provider."""
    if not any(is_real(d) for d in documents):
        return
    problems = swapped_stand_ins(documents, client.get_resources("Provider").get("items") or [])
    if problems and not dry_run:
        raise RealProvidersRefused(problems)
    for line in RealProvidersRefused(problems).lines() if problems else []:
        print(line.replace("error: ", "warning: ", 1), file=sys.stderr)
