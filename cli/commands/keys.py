"""``keys create`` and ``keys list``: the secret exists only in the creation answer, so it is shown once."""

from __future__ import annotations

import re
import sys
import time
from typing import Annotated, Any

import typer

from cli.commands.policy import print_resources
from cli.errors import UsageError, exit_on_error
from cli.options import AdminTokenOpt, AsOpt, ControlPlaneOpt, OutputOpt, connect, who
from cli.output import OutputFormat

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

keys_app = typer.Typer(help="Create and list client API keys.", no_args_is_help=True)


def parse_duration(text: str) -> int:
    """``30d``, ``12h``, ``90m``, ``3600s``, ``2w`` (or ``1d12h``) → seconds."""
    parts = re.findall(r"(\d+)([smhdw])", text.strip().lower())
    if not parts or "".join(n + u for n, u in parts) != text.strip().lower():
        raise UsageError(f"--expires-in {text!r}: use a duration like 30d, 12h, 90m or 1d12h")
    seconds = sum(int(n) * UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise UsageError("--expires-in must be longer than zero")
    return seconds


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="The key's name (an ApiKey resource)")],
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant the key belongs to")],
    project: Annotated[str | None, typer.Option("--project", help="Project of the tenant")] = None,
    route: Annotated[list[str] | None, typer.Option("--route", help="Allowed route (repeatable); default: the "
                                                     "tenant's")] = None,
    expires_in: Annotated[str | None, typer.Option("--expires-in", help="e.g. 30d, 12h; default: never")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the secret")] = False,
    control_plane: ControlPlaneOpt = None,
    admin_token: AdminTokenOpt = None,
    as_: AsOpt = None,
) -> None:
    """Create a key; its secret is printed once and never again."""
    with exit_on_error():
        expires_at = int(time.time()) + parse_duration(expires_in) if expires_in else None
        answer = connect(control_plane, admin_token).create_key(
            name, tenant, project, route or [], expires_at, who(as_))
        secret = str(answer.get("secret", ""))
        if quiet:
            print(secret)
        else:
            print(f"ApiKey/{answer.get('name', name)} created (hint {answer.get('hint', '-')})")
            print(f"secret: {secret}")
        print("warning: this is the only time the secret is shown; store it now (only its hash is kept)",
              file=sys.stderr)


@keys_app.command("list")
def list_keys(
    output: OutputOpt = OutputFormat.table,
    control_plane: ControlPlaneOpt = None,
    admin_token: AdminTokenOpt = None,
) -> None:
    """List keys (name, tenant, project, hint, routes, expiry; never a secret)."""
    with exit_on_error():
        answer = connect(control_plane, admin_token).get_resources("ApiKey")
        items: list[dict[str, Any]] = [i for i in answer.get("items") or [] if isinstance(i, dict)]
        print_resources("ApiKey", items, answer, output, single=False)
