"""``apply``, ``diff``, ``get``, ``delete``: policy documents in, resources out.

``apply`` and ``diff`` validate every document locally first and send nothing if one is wrong; the server then
validates the whole set again (references, compilation) and applies it all or nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import typer

from cli.documents import load_documents
from cli.errors import ExitCode, UsageError, exit_on_error
from cli.options import AdminTokenOpt, AsOpt, ControlPlaneOpt, OutputOpt, connect, who
from cli.output import OutputFormat, resources_table, to_json, to_yaml_documents
from controlplane.policy.resources import KIND_ALIASES, KINDS, Kind

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


def apply(
    filename: FilesOpt,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and show what would change; write nothing")]
    = False,
    control_plane: ControlPlaneOpt = None,
    admin_token: AdminTokenOpt = None,
    as_: AsOpt = None,
) -> None:
    """Create or update the resources described in YAML files (all or nothing)."""
    with exit_on_error():
        documents = load_documents(filename)
        answer = connect(control_plane, admin_token).apply([d.to_request() for d in documents], dry_run, who(as_))
        for line in change_lines(answer.get("changes") or [], dry_run):
            print(line)


def diff(filename: FilesOpt, control_plane: ControlPlaneOpt = None, admin_token: AdminTokenOpt = None) -> None:
    """Show what apply would change, as unified diffs. Exit 0: no changes, 1: changes, >1: error."""
    with exit_on_error():
        documents = load_documents(filename)
        answer = connect(control_plane, admin_token).apply([d.to_request() for d in documents], True, who(None))
        changed = [c for c in answer.get("changes") or [] if c.get("op") != "unchanged"]
        for change in changed:
            text = str(change.get("diff") or "")
            if not text:
                text = f"{change.get('op')} {change.get('kind')}/{change.get('name')}\n"
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
    raise typer.Exit(int(ExitCode.CHANGES if changed else ExitCode.OK))


def get(
    kind: Annotated[str, typer.Argument(help="tenants, keys, providers, models or routes (singular works too)")],
    name: Annotated[str | None, typer.Argument(help="Only this one")] = None,
    output: OutputOpt = OutputFormat.table,
    control_plane: ControlPlaneOpt = None,
    admin_token: AdminTokenOpt = None,
) -> None:
    """List resources of a kind, or show one."""
    with exit_on_error():
        resolved = resolve_kind(kind)
        answer = connect(control_plane, admin_token).get_resources(resolved, name)
        items: list[dict[str, Any]] = [i for i in answer.get("items") or [] if isinstance(i, dict)]
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
        print(resources_table(kind, items))
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
