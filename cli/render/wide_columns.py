"""``gatectl get -o wide``: each kind's table (``cli.render.output.RESOURCE_COLUMNS``) plus more columns and the labels.

Pure. Like the narrow table, it shows no secret: a provider's credential is the name of a variable, a key's the
hint of its secret.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cli.render.output import RESOURCE_COLUMNS, Columns, Row, table
from cli.selectors import labels_of


def _spec(r: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = r.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _get(r: Mapping[str, Any], *path: str) -> object:
    value: object = _spec(r)
    for part in path:
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _text(value: object) -> str:
    if value in (None, "", [], {}):
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def _pair(r: Mapping[str, Any], *paths: tuple[str, ...]) -> str:
    return "/".join(_text(_get(r, *p)) for p in paths)


def labels_text(r: Mapping[str, Any]) -> str:
    labels = labels_of(r)
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


WIDE_EXTRAS: dict[str, Columns] = {
    "Tenant": (
        ("BUDGET $/MONTH", "CONTENT LOGGING", "RETENTION DAYS"),
        lambda r: [_text(_get(r, "budget", "monthlyUsd")), _text(_get(r, "logging", "content")),
                   _text(_get(r, "logging", "retentionDays"))],
    ),
    "ApiKey": (
        ("BUDGET $/MONTH", "RPM/TPM"),
        lambda r: [_text(_get(r, "budget", "monthlyUsd")),
                   _pair(r, ("rateLimits", "requestsPerMinute"), ("rateLimits", "tokensPerMinute"))],
    ),
    "Provider": (
        ("API VERSION", "AWS REGION/PROFILE", "GCP PROJECT/LOCATION", "TIMEOUTS CONNECT/READ", "DPA"),
        lambda r: [_text(_get(r, "apiVersion")), _pair(r, ("awsRegion",), ("awsProfile",)),
                   _pair(r, ("gcpProject",), ("gcpLocation",)),
                   _pair(r, ("timeouts", "connectSeconds"), ("timeouts", "readSeconds")),
                   "yes" if _get(r, "compliance", "dpaSigned") else "no"],
    ),
    "Model": (
        ("MAX OUTPUT", "SERVES"),
        lambda r: [_text(_get(r, "maxOutputTokens")), _text(_get(r, "serves"))],
    ),
    "Route": (
        ("KIND", "WEIGHTS", "FAILOVER ON", "TIMEOUTS ATTEMPT/TOTAL"),
        lambda r: [_text(_get(r, "kind")), _text(_get(r, "weights")), _text(_get(r, "failover", "on")),
                   _pair(r, ("failover", "attemptTimeoutSeconds"), ("failover", "totalTimeoutSeconds"))],
    ),
}


def wide_table(kind: str, items: Sequence[Mapping[str, Any]]) -> str:
    headers, row = RESOURCE_COLUMNS[kind]
    extra_headers, extra = WIDE_EXTRAS.get(kind, ((), _none))
    rows = [row(i) + extra(i) + [labels_text(i)] for i in items]
    return table([*headers, *extra_headers, "LABELS"], rows)


def _none(_: Mapping[str, Any]) -> Row:
    return []
