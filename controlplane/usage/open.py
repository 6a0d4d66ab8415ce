"""Opening the usage database by URL: the one place that knows both engines (``db`` is the embedded one).

- ``duckdb:///path/to/usage.duckdb`` (``duckdb://`` alone: in memory): the embedded default, for one machine.
- ``postgresql://USER[:PASSWORD]@HOST[:PORT]/DB`` (or ``postgres://``): shared by several control-plane replicas.
"""

from __future__ import annotations

from pathlib import Path

from controlplane.usage.db import UsageDB, UsageDBError
from controlplane.usage.postgres import PostgresUsageDB, redact

SCHEMES = ("duckdb://", "postgresql://", "postgres://")


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot name a usage database, or None: checked before anything starts."""
    if not url.startswith(SCHEMES):
        return (f"unsupported usage store URL {redact(url)!r}: use duckdb:///PATH (one machine) or "
                "postgresql://USER@HOST[:PORT]/DB (shared by replicas)")
    return None


async def open_usage_db(url: str) -> UsageDB:
    """Open (creating the schema if needed) the usage database ``url`` names. ``UsageDBError`` if it cannot."""
    problem = url_problem(url)
    if problem is not None:
        raise UsageDBError(problem)
    if url.startswith("duckdb://"):
        path = url.removeprefix("duckdb://") or None
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return await UsageDB.open(path)
    return await PostgresUsageDB.connect(url)


def describe(url: str) -> str:
    """The URL as logs may show it (no password)."""
    return redact(url)
