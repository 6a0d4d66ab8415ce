"""``keys create``, ``list``, ``rotate`` and ``revoke``: a secret exists only in the answer that made it, so it is
shown once; a rotated-out secret works until its overlap ends, a revoked key not at all (and no rollback undoes
either)."""

from __future__ import annotations

import re
import sys
import time
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ValidationError

from cli.commands.policy import print_resources
from cli.errors import UsageError, exit_on_error
from cli.options import AdminTokenOpt, AsOpt, ControlPlaneOpt, OutputOpt, connect, who
from cli.render.output import OutputFormat, format_time
from controlplane.policy.resources import Budget, RateLimit

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
SECRET_WARNING = "warning: this is the only time the secret is shown; store it now (only its hash is kept)"

keys_app = typer.Typer(help="Create, list, rotate and revoke client API keys.", no_args_is_help=True)


def parse_duration(text: str, flag: str = "--expires-in", allow_zero: bool = False) -> int:
    """``30d``, ``12h``, ``90m``, ``3600s``, ``2w`` (or ``1d12h``) → seconds."""
    parts = re.findall(r"(\d+)([smhdw])", text.strip().lower())
    if not parts or "".join(n + u for n, u in parts) != text.strip().lower():
        raise UsageError(f"{flag} {text!r}: use a duration like 30d, 12h, 90m or 1d12h")
    seconds = sum(int(n) * UNITS[u] for n, u in parts)
    if seconds <= 0 and not allow_zero:
        raise UsageError(f"{flag} must be longer than zero")
    return seconds


def _limits(model: type[BaseModel], flags: dict[str, tuple[str, object]]) -> dict[str, Any] | None:
    """The policy block ``model`` (``budget``, ``rateLimits``) from the flags given, checked here so an error
    names the flag; ``flags`` maps the policy field (camelCase) to (flag, value or None)."""
    given = {field: value for field, (_, value) in flags.items() if value is not None}
    if not given:
        return None
    try:
        model.model_validate(given)
    except ValidationError as e:
        first = e.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        flag, value = flags.get(field, (field, None))
        raise UsageError(f"{flag} {value!r}: {first['msg']}" if value is not None else
                         f"{flag} is required with {', '.join(f for f, v in flags.values() if v is not None)}: "
                         f"{first['msg']}") from None
    return given


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="The key's name (an ApiKey resource)")],
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant the key belongs to")],
    project: Annotated[str | None, typer.Option("--project", help="Project of the tenant")] = None,
    route: Annotated[list[str] | None, typer.Option("--route", help="Allowed route (repeatable); default: the "
                                                     "tenant's")] = None,
    expires_in: Annotated[str | None, typer.Option("--expires-in", help="e.g. 30d, 12h; default: never")] = None,
    budget_usd: Annotated[str | None, typer.Option(
        "--budget-usd", help="The key's own monthly budget in USD (hard cap), e.g. 50 or 12.5", show_default=False,
    )] = None,
    budget_soft_percent: Annotated[int | None, typer.Option(
        "--budget-soft-percent", help="Alert past this share of --budget-usd [default: 80]", show_default=False,
    )] = None,
    budget_lease_seconds: Annotated[int | None, typer.Option(
        "--budget-lease-seconds", help="How long a data plane's grant of the key's budget lasts", show_default=False,
    )] = None,
    requests_per_minute: Annotated[int | None, typer.Option(
        "--requests-per-minute", help="The key's own rate limit (whole fleet)", show_default=False)] = None,
    tokens_per_minute: Annotated[int | None, typer.Option(
        "--tokens-per-minute", help="The key's own token rate limit (whole fleet)", show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the secret")] = False,
    control_plane: ControlPlaneOpt = None,
    admin_token: AdminTokenOpt = None,
    as_: AsOpt = None,
) -> None:
    """Create a key; its secret is printed once and never again."""
    with exit_on_error():
        expires_at = int(time.time()) + parse_duration(expires_in) if expires_in else None
        budget = _limits(Budget, {"monthlyUsd": ("--budget-usd", budget_usd),
                                  "softPercent": ("--budget-soft-percent", budget_soft_percent),
                                  "leaseSeconds": ("--budget-lease-seconds", budget_lease_seconds)})
        rate_limits = _limits(RateLimit, {"requestsPerMinute": ("--requests-per-minute", requests_per_minute),
                                          "tokensPerMinute": ("--tokens-per-minute", tokens_per_minute)})
        answer = connect(control_plane, admin_token).create_key(
            name, tenant, project, route or [], expires_at, who(as_), budget, rate_limits)
        secret = str(answer.get("secret", ""))
        if quiet:
            print(secret)
        else:
            print(f"ApiKey/{answer.get('name', name)} created (hint {answer.get('hint', '-')})")
            print(f"secret: {secret}")
        print(SECRET_WARNING, file=sys.stderr)


@keys_app.command("rotate")
def rotate(
    name: Annotated[str, typer.Argument(help="The key to give a new secret")],
    overlap: Annotated[str | None, typer.Option(
        "--overlap", help="How long the old secret keeps working, e.g. 24h [default: it stops at once]",
        show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the new secret")] = False,
    control_plane: ControlPlaneOpt = None,
    admin_token: AdminTokenOpt = None,
    as_: AsOpt = None,
) -> None:
    """A new secret for a key (printed once); the old one works until the overlap ends, then is refused."""
    with exit_on_error():
        seconds = parse_duration(overlap, "--overlap", allow_zero=True) if overlap else 0
        answer = connect(control_plane, admin_token).rotate_key(name, seconds, who(as_))
        secret = str(answer.get("secret", ""))
        if quiet:
            print(secret)
        else:
            until = answer.get("previousExpiresAt")
            print(f"ApiKey/{name} rotated (hint {answer.get('hint', '-')}); the old secret "
                  + (f"works until {format_time(until)}" if seconds else "no longer works"))
            print(f"secret: {secret}")
        print(SECRET_WARNING, file=sys.stderr)


@keys_app.command("revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="The key to revoke")],
    control_plane: ControlPlaneOpt = None,
    admin_token: AdminTokenOpt = None,
    as_: AsOpt = None,
) -> None:
    """Refuse every secret of a key from the next snapshot on; no rollback brings it back."""
    with exit_on_error():
        answer = connect(control_plane, admin_token).revoke_key(name, who(as_))
        print(f"ApiKey/{name} revoked (revision {answer.get('revision', '?')})")


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
