"""``apply``, ``diff``, ``get``, ``delete``: policy documents in, resources out.

``apply`` and ``diff`` validate every document locally first and send nothing if one is wrong; the server then
validates the whole set again (references, compilation) and applies it all or nothing. On a terminal both show
their progress on stderr, and both end with a one-line summary there (stdout keeps the changes). ``diff`` prints
unified YAML diffs, one per changed document. ``get`` filters by labels (``-l``) and has a wide table.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import typer

from cli.documents import LoadedDocument, load_documents
from cli.errors import ExitCode, UsageError, exit_on_error
from cli.options import AdminTokenOpt, AsOpt, ControlPlaneOpt, OutputOpt, connect, who
from cli.render.output import OutputFormat, resources_table, to_json, to_yaml_documents
from cli.render.progress import Progress, count, summary
from cli.render.wide_columns import wide_table
from cli.render.yaml_diff import change_diff
from cli.selectors import matches, parse_selector
from cli.stand_ins import keep_stand_ins
from controlplane.errors import InvalidRequest
from controlplane.policy.resources import KIND_ALIASES, KINDS, Kind
from controlplane.rollout.state import parse_abort_rule, parse_canary, parse_duration

FilesOpt = Annotated[
    list[str], typer.Option("--filename", "-f", help="A YAML file or a folder (recursive); repeatable")
]

PAST_TENSE = {"create": "created", "update": "configured", "unchanged": "unchanged", "delete": "deleted"}


def resolve_kind(word: str) -> Kind:
    kind = KIND_ALIASES.get(word.lower())
    if kind is None:
        accepted = ", ".join(sorted({k.lower() + "s" for k in KINDS} | {"keys"}))
        raise UsageError(f"unknown kind {word!r}; use one of: {accepted}")
    return kind


def change_lines(changes: Sequence[Mapping[str, Any]], dry_run: bool) -> list[str]:
    suffix = " (dry run)" if dry_run else ""
    return [f"{c.get('kind')}/{c.get('name')} {PAST_TENSE.get(str(c.get('op')), str(c.get('op')))}{suffix}"
            for c in changes]


def changes_summary(what: str, changes: Sequence[Mapping[str, Any]], elapsed_s: float, dry_run: bool = False) -> str:
    """``apply: 12 documents: 3 created, 1 configured, 8 unchanged (dry run) in 0.4s``."""
    ops: dict[str, int] = {}
    for c in changes:
        ops[str(c.get("op"))] = ops.get(str(c.get("op")), 0) + 1
    order = [*PAST_TENSE, *sorted(ops.keys() - PAST_TENSE.keys())]
    parts = [f"{ops[op]} {PAST_TENSE.get(op, op)}" for op in order if ops.get(op)]
    return (f"{what}: {count(len(changes), 'document')}: {', '.join(parts) or 'nothing'}"
            f"{' (dry run)' if dry_run else ''} in {elapsed_s:.1f}s")


def load_with_progress(filename: Sequence[str], progress: Progress) -> list[LoadedDocument]:
    """``load_documents``, its progress shown on ``progress``."""
    def on_file(done: int, total: int, documents: int) -> None:
        progress.update(f"validating: {done}/{total} files, {count(documents, 'document')}", force=done == total)

    return load_documents(filename, on_file)


def apply(
    filename: FilesOpt,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and show what would change; write nothing")]
    = False,
    control_plane: ControlPlaneOpt = None,
    admin_token: AdminTokenOpt = None,
    as_: AsOpt = None,
    real_providers: Annotated[bool, typer.Option(
        "--real-providers", help="Confirm replacing the mock providers of a `gatectl up` gateway with real ones")]
    = False,
    canary: Annotated[str | None, typer.Option(
        "--canary", help="Staged rollout: only these data planes get the new policy first: REGION[,REGION] or "
        "dataplane=NAME (then `gatectl rollout promote|abort`)")] = None,
    promote_after: Annotated[str | None, typer.Option(
        "--promote-after", help="With --canary: the control plane promotes by itself after this long (90s, 10m, "
        "2h) unless an abort condition holds")] = None,
    abort_if: Annotated[str | None, typer.Option(
        "--abort-if", help="With --canary: abort by itself when the canary's error rate exceeds the others' by "
        "more than this (error-rate>2%); a NACK from a canary data plane always aborts")] = None,
) -> None:
    """Create or update the resources described in YAML files (all or nothing); with --canary, as a staged rollout."""
    with exit_on_error(), Progress() as progress:
        check_rollout_options(canary, promote_after, abort_if)
        documents = load_with_progress(filename, progress)
        client = connect(control_plane, admin_token)
        if not real_providers:
            keep_stand_ins(client, documents, dry_run)
        with progress.waiting(f"applying {count(len(documents), 'document')}"):
            if canary is not None and not dry_run:
                answer = client.start_rollout([d.to_request() for d in documents], who(as_), canary, promote_after,
                                              abort_if)
            else:
                answer = client.apply([d.to_request() for d in documents], dry_run, who(as_))
        progress.clear()
        changes = answer.get("changes") or []
        for line in change_lines(changes, dry_run):
            print(line)
        summary(changes_summary("apply", changes, progress.elapsed_s, dry_run))
        rollout = answer.get("rollout")
        if isinstance(rollout, Mapping):
            print(f"rollout {rollout.get('id')} started: revision {rollout.get('targetRevision')} goes to the canary "
                  f"({canary}) only; the others keep revision {rollout.get('baseRevision')}. "
                  "See `gatectl rollout status`.")


def check_rollout_options(canary: str | None, promote_after: str | None, abort_if: str | None) -> None:
    """Refuse malformed rollout options before reading a file (the control plane checks them again)."""
    if canary is None:
        if promote_after is not None or abort_if is not None:
            raise UsageError("--promote-after and --abort-if need --canary")
        return
    try:
        parse_canary(canary)
        if promote_after is not None:
            parse_duration(promote_after)
        if abort_if is not None:
            parse_abort_rule(abort_if)
    except InvalidRequest as e:
        raise UsageError(str(e).replace("'canary'", "--canary").replace("'promoteAfter'", "--promote-after")
                         .replace("'abortIf'", "--abort-if")) from None


def diff(filename: FilesOpt, control_plane: ControlPlaneOpt = None, admin_token: AdminTokenOpt = None) -> None:
    """Show what apply would change, as unified YAML diffs. Exit 0: no changes, 1: changes, >1: error.

    One diff per changed document, with ---/+++ headers (a/Kind/name: what the control plane holds, b/Kind/name:
    what apply would make of it; /dev/null for a document created or deleted), like kubectl diff."""
    with exit_on_error(), Progress() as progress:
        documents = load_with_progress(filename, progress)
        with progress.waiting(f"comparing {count(len(documents), 'document')} with the control plane"):
            answer = connect(control_plane, admin_token).apply([d.to_request() for d in documents], True, who(None),
                                                               with_bodies=True)
        progress.clear()
        changes = answer.get("changes") or []
        changed = [c for c in changes if c.get("op") != "unchanged"]
        for change in changed:
            sys.stdout.write(change_diff(change))
        summary(changes_summary("diff", changes, progress.elapsed_s))
    raise typer.Exit(int(ExitCode.CHANGES if changed else ExitCode.OK))


def get(
    kind: Annotated[str, typer.Argument(help="tenants, keys, providers, models or routes (singular works too)")],
    name: Annotated[str | None, typer.Argument(help="Only this one")] = None,
    output: OutputOpt = OutputFormat.table,
    selector: Annotated[str | None, typer.Option(
        "--selector", "-l", help="Only resources whose metadata.labels match: key=value, key!=value, key or !key, "
                                 "comma-separated (all must hold)", show_default=False)] = None,
    control_plane: ControlPlaneOpt = None,
    admin_token: AdminTokenOpt = None,
) -> None:
    """List resources of a kind, or show one. -o wide adds columns and the labels."""
    with exit_on_error():
        resolved = resolve_kind(kind)
        wanted = parse_selector(selector) if selector is not None else None
        answer = connect(control_plane, admin_token).get_resources(resolved, name)
        items: list[dict[str, Any]] = [i for i in answer.get("items") or [] if isinstance(i, dict)]
        if wanted is not None:
            items = [i for i in items if matches(wanted, i)]
            answer = {**answer, "items": items}
        print_resources(resolved, items, answer, output, single=name is not None)


def print_resources(
    kind: Kind, items: list[dict[str, Any]], answer: Mapping[str, Any], output: OutputFormat, single: bool
) -> None:
    if output is OutputFormat.json:
        print(to_json(items[0] if single and items else dict(answer)))
    elif output is OutputFormat.yaml:
        if items:
            sys.stdout.write(to_yaml_documents(items))
    elif items:
        print(wide_table(kind, items) if output is OutputFormat.wide else resources_table(kind, items))
    else:
        print(f"No {kind} resources found.", file=sys.stderr)


def delete(
    kind: Annotated[str, typer.Argument(help="tenant, key, provider, model or route")],
    name: Annotated[str, typer.Argument()],
    control_plane: ControlPlaneOpt = None,
    admin_token: AdminTokenOpt = None,
    as_: AsOpt = None,
) -> None:
    """Delete one resource (refused while something still refers to it)."""
    with exit_on_error():
        resolved = resolve_kind(kind)
        connect(control_plane, admin_token).delete(resolved, name, who(as_))
        print(f"{resolved}/{name} deleted")
