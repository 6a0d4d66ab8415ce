"""Rendering answers as tables (for people), YAML (re-appliable documents) or JSON (for scripts). Pure functions.

Tables never show secrets; there is none to show, the control plane keeps only key hashes. A key's row shows its
``hint`` (``tw_...abcd``), which is what identifies a key to a person.
"""

from __future__ import annotations

import csv
import enum
import io
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml


class OutputFormat(enum.StrEnum):
    table = "table"
    wide = "wide"  # the table with more columns (where a command has them; else the table)
    yaml = "yaml"
    json = "json"


Row = list[str]
Columns = tuple[Sequence[str], Callable[[Mapping[str, Any]], Row]]


def table(headers: Sequence[str], rows: Sequence[Row]) -> str:
    """kubectl-style: upper-case headers, columns padded to their widest cell, three spaces apart."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = ["   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in [list(headers), *rows]]
    return "\n".join(lines)


ENVELOPE_ORDER = ("apiVersion", "kind", "metadata", "spec")


def to_yaml_documents(items: Sequence[Mapping[str, Any]]) -> str:
    """Multi-document YAML in the order people write it (envelope first), so ``get -o yaml`` output re-applies."""

    def ordered(item: Mapping[str, Any]) -> dict[str, Any]:
        head = {k: item[k] for k in ENVELOPE_ORDER if k in item}
        return head | {k: v for k, v in item.items() if k not in head}

    return "---\n".join(yaml.safe_dump(ordered(i), sort_keys=False, default_flow_style=False) for i in items)


def to_json(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=False)


def _spec(r: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = r.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _name(r: Mapping[str, Any]) -> str:
    meta = r.get("metadata")
    return str(meta.get("name", "")) if isinstance(meta, Mapping) else ""


def _join(values: object, empty: str = "-") -> str:
    if isinstance(values, list) and values:
        return ",".join(str(v.get("name", v)) if isinstance(v, Mapping) else str(v) for v in values)
    return empty


def _or_dash(value: object) -> str:
    return "-" if value in (None, "") else str(value)


def format_time(value: object) -> str:
    """Unix seconds (int/float) → ISO-8601 UTC; strings are shown as the server wrote them."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return _or_dash(value)


def format_age(value: object, now: float | None = None) -> str:
    """How long ago: ``42s``, ``5m``, ``3h``, ``2d`` from unix seconds or an ISO-8601 string."""
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and value:
        try:
            seconds = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return value
    if seconds is None or seconds <= 0:
        return "-"
    age = max(0, int((time.time() if now is None else now) - seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if age >= size:
            return f"{age // size}{unit}"
    return f"{age}s"


def _expires(value: object) -> str:
    return "never" if not value else format_time(value)


def _key_status(spec: Mapping[str, Any]) -> str:
    """revoked, rotating (an old secret still accepted: until when), or active."""
    if spec.get("revokedAt") is not None:
        return f"revoked {format_time(spec['revokedAt'])}"
    ends = [p.get("expiresAt") for p in spec.get("previousSecrets") or () if isinstance(p, Mapping)]
    live = [e for e in ends if isinstance(e, int) and e > time.time()]
    return f"rotating (old secret until {format_time(max(live))})" if live else "active"


def _price(pricing: object, field: str) -> str:
    return _or_dash(pricing.get(field)) if isinstance(pricing, Mapping) else "-"


RESOURCE_COLUMNS: dict[str, Columns] = {
    "Tenant": (
        ("NAME", "DISPLAY NAME", "REGIONS", "PROJECTS", "ROUTES"),
        lambda r: [_name(r), _or_dash(_spec(r).get("displayName")), _join(_spec(r).get("regions")),
                   _join(_spec(r).get("projects")), _join(_spec(r).get("routes"), "(all)")],
    ),
    "ApiKey": (
        ("NAME", "TENANT", "PROJECT", "HINT", "ROUTES", "EXPIRES", "STATUS"),
        lambda r: [_name(r), _or_dash(_spec(r).get("tenant")), _or_dash(_spec(r).get("project")),
                   _or_dash(_spec(r).get("hint")), _join(_spec(r).get("routes"), "(tenant's)"),
                   _expires(_spec(r).get("expiresAt")), _key_status(_spec(r))],
    ),
    "Provider": (
        ("NAME", "TYPE", "REGION", "BASE URL", "CREDENTIAL ENV"),
        lambda r: [_name(r), _or_dash(_spec(r).get("type")), _or_dash(_spec(r).get("region")),
                   _or_dash(_spec(r).get("baseUrl")),
                   _or_dash((_spec(r).get("credential") or {}).get("env"))],
    ),
    "Model": (
        ("NAME", "PROVIDER", "UPSTREAM MODEL", "CONTEXT", "INPUT $/M", "OUTPUT $/M", "CAPABILITIES"),
        lambda r: [_name(r), _or_dash(_spec(r).get("provider")), _or_dash(_spec(r).get("upstreamModel")),
                   _or_dash(_spec(r).get("contextWindow")), _price(_spec(r).get("pricing"), "inputPerMillion"),
                   _price(_spec(r).get("pricing"), "outputPerMillion"), _join(_spec(r).get("capabilities"))],
    ),
    "Route": (
        ("NAME", "STRATEGY", "MODELS", "ATTEMPTS"),
        lambda r: [_name(r), _or_dash(_spec(r).get("strategy")), _join(_spec(r).get("models")),
                   _or_dash((_spec(r).get("failover") or {}).get("attempts"))],
    ),
}


def resources_table(kind: str, items: Sequence[Mapping[str, Any]]) -> str:
    headers, row = RESOURCE_COLUMNS[kind]
    return table(headers, [row(i) for i in items])


def rollout_step(entry: Mapping[str, Any]) -> str | None:
    """What a ``rollout-start|promote|abort`` history or audit entry did, in full (None for other entries):
    ``rollout-promote rollout-14 (canary eu): revision 14 everywhere (eu 1c07…, us 2da9…): why``."""
    action, rollout = entry.get("action"), entry.get("rollout")
    if not (isinstance(action, str) and action.startswith("rollout-") and isinstance(rollout, Mapping)):
        return None
    found = rollout.get("canary")
    canary: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    where = ",".join([*canary.get("regions", []), *(f"dataplane={d}" for d in canary.get("dataplanes", []))])
    found = rollout.get("versions")
    versions: Mapping[str, Any] = found if isinstance(found, Mapping) else {}

    def per_region(side: str) -> str:
        shown = [f"{r} {v.get(side) or '-'}" for r, v in sorted(versions.items()) if isinstance(v, Mapping)]
        return f" ({', '.join(shown)})" if shown else ""

    target, base = rollout.get("targetRevision", "?"), rollout.get("baseRevision", "?")
    if action == "rollout-start":
        what = f"revision {target} to the canary, {base} elsewhere"
    elif action == "rollout-promote":
        what = f"revision {target} everywhere{per_region('canary')}"
    else:
        what = f"the canary back to the policy of revision {base}{per_region('others')}"
    reason = rollout.get("reason")
    return f"{action} {rollout.get('id', '?')} (canary {where}): {what}" + (f": {reason}" if reason else "")


def history_table(items: Sequence[Mapping[str, Any]]) -> str:
    def changes(entry: Mapping[str, Any]) -> str:
        action = entry.get("action")
        # A key's revoke or rotate is stored as an update of the key; show what it was.
        parts = [f"{action if action in ('revoke', 'rotate') else c.get('op', '?')} "
                 f"{c.get('kind', '?')}/{c.get('name', '?')}"
                 for c in entry.get("changes") or [] if isinstance(c, Mapping)]
        text = (f"{action}: " if action == "rollback" else "") + (", ".join(parts) or "-")
        text = text if len(text) <= 80 else text[:77] + "..."
        step = rollout_step(entry)  # shown whole: which regions got which version, and why
        return text if step is None else step + (f"; {text}" if parts else "")

    rows = [[_or_dash(e.get("revision")), format_time(e.get("time")), _or_dash(e.get("who")), changes(e)]
            for e in items]
    return table(("REVISION", "TIME", "WHO", "CHANGES"), rows)


def dataplanes_table(items: Sequence[Mapping[str, Any]], now: float | None = None) -> str:
    def status(d: Mapping[str, Any]) -> str:
        s = _or_dash(d.get("status"))
        return f"{s}: {d['error']}" if d.get("error") else s

    rows = [[_or_dash(d.get("nodeId")), _or_dash(d.get("region")), _or_dash(d.get("version")), status(d),
             format_age(d.get("lastSeen"), now), "yes" if d.get("connected") else "no"] for d in items]
    return table(("NODE", "REGION", "VERSION", "STATUS", "LAST SEEN", "CONNECTED"), rows)


def providers_table(items: Sequence[Mapping[str, Any]], wide: bool = False, now: float | None = None) -> str:
    """One row per deployment and data plane reporting it; a disconnected data plane's last report is marked. An
    unhealthy state shows since when and why (the last error, the check's finding, the missing credential's
    source); ``wide`` adds the consecutive failures and the back-off left."""
    def ttfb(ms: object) -> str:
        return f"{ms:.0f}ms" if isinstance(ms, int | float) and not isinstance(ms, bool) and ms > 0 else "-"

    rows = []
    for item in items:
        for d in item.get("dataplanes") or []:
            if not isinstance(d, Mapping):
                continue
            state = _or_dash(d.get("state")) + ("" if d.get("connected") else " (disconnected)")
            since = format_age(d.get("since"), now)
            row = [_or_dash(item.get("provider")), _or_dash(item.get("deployment")), _or_dash(d.get("nodeId")),
                   _or_dash(d.get("region")), state, _or_dash(d.get("ejections")), ttfb(d.get("ttfbMs")),
                   since if since == "-" else f"{since} ago"]
            if wide:
                left = d.get("ejectedForS")
                row += [_or_dash(d.get("consecutiveFailures")),
                        f"{left:.1f}s" if isinstance(left, int | float) and left > 0 else "-"]
            rows.append([*row, _or_dash(d.get("reason"))])
    headers = ["PROVIDER", "DEPLOYMENT", "DATA PLANE", "REGION", "STATE", "EJECTIONS", "TTFB", "SINCE"]
    return table([*headers, *(("FAILURES", "BACK-OFF") if wide else ()), "REASON"], rows)


class RowsFormat(enum.StrEnum):
    """Output of the report commands: rows of numbers, for people (table) or spreadsheets (csv)."""

    table = "table"
    csv = "csv"
    json = "json"


def show_rows(answer: Mapping[str, Any], headers: Sequence[str], rows: Sequence[Row], output: RowsFormat,
              empty: str) -> None:
    """Print a report: the server's JSON answer as is, or its ``rows`` as CSV (snake_case header) or a table;
    ``empty`` goes to stderr when there are no rows."""
    if output is RowsFormat.json:
        print(to_json(answer))
    elif output is RowsFormat.csv:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([h.lower().replace(" ", "_") for h in headers])
        writer.writerows(rows)
        sys.stdout.write(buf.getvalue())
    elif rows:
        print(table(headers, rows))
    else:
        print(empty, file=sys.stderr)


def show_items(items: Sequence[Mapping[str, Any]], answer: Mapping[str, Any], output: OutputFormat,
               render: Callable[[Sequence[Mapping[str, Any]]], str], empty: str,
               wide: Callable[[Sequence[Mapping[str, Any]]], str] | None = None) -> None:
    """Print a listing: JSON (the whole answer), YAML documents (the items) or ``render``'s table (``wide``'s for
    ``-o wide``, when the command has one)."""
    if output is OutputFormat.json:
        print(to_json(answer))
    elif output is OutputFormat.yaml:
        if items:
            sys.stdout.write(to_yaml_documents(items))
    elif items:
        print((wide or render)(items) if output is OutputFormat.wide else render(items))
    else:
        print(empty, file=sys.stderr)
