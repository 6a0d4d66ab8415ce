"""Usage analytics over ``usage_events`` (docs/usage-schema.md): daily and hourly cost, latency trends, error rates,
top users, keys and projects, tokens of each kind.

Each report is a pure SQL builder (``*_query``: ``Span`` and filters in, SQL text and parameters out) and a row
type; ``Analytics`` runs them through ``UsageDB.fetch``, so analytics never open a second connection to the DuckDB
file and never block the event loop. The SQL is written once for both engines (DuckDB, PostgreSQL): the subset
they share, ``?`` parameters and ``epoch_ms(?)`` (see ``UsageDB``). Only the fixed strings of the ``_GROUPS`` and
``_FILTERS`` tables are ever pasted into SQL; every value travels as a parameter.

Conventions shared by every report:

- a ``Span`` is ``[since_ms, until_ms)`` in unix milliseconds, either end open; days are UTC calendar days;
- money is integer pico-dollars (``cost_pico``, exact: ``tollway.money``); latencies are milliseconds
  (quantiles interpolated, so floats);
- token kinds billed apart are parts of the totals, as in a usage record: cache reads and writes of
  ``input_tokens``, reasoning of ``output_tokens``;
- a request is an error when its status is >= 400 or it carries an error type;
- latency quantiles are over successful requests only: a refused or failed request's latency says nothing about
  how fast a model answers.

Errors: ``controlplane.errors.InvalidRequest`` for a period that cannot be parsed; ``ValueError`` for a dimension
or filter that is not one of the documented names (a programming error: the admin API checks its input first);
``controlplane.usage.db.UsageDBError`` when the database fails.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, cast, get_args

from controlplane.errors import InvalidRequest
from controlplane.usage.db import UsageDB

CostDimension = Literal["tenant", "project", "tag"]
ModelDimension = Literal["route", "deployment"]
ErrorDimension = Literal["provider", "deployment"]
RankDimension = Literal["key", "project", "tenant"]
TokenDimension = Literal["route", "deployment", "provider", "tenant", "project"]
Filter = Literal["tenant", "project", "user", "route", "deployment", "provider", "region", "tag"]
UserOrder = Literal["cost", "requests"]

COST_DIMENSIONS: tuple[str, ...] = get_args(CostDimension)
MODEL_DIMENSIONS: tuple[str, ...] = get_args(ModelDimension)
ERROR_DIMENSIONS: tuple[str, ...] = get_args(ErrorDimension)
RANK_DIMENSIONS: tuple[str, ...] = get_args(RankDimension)
TOKEN_DIMENSIONS: tuple[str, ...] = get_args(TokenDimension)
FILTERS: tuple[str, ...] = get_args(Filter)
USER_ORDERS: tuple[str, ...] = get_args(UserOrder)

# Group expressions. A project is named within its tenant, so it is reported as "tenant/project".
_GROUPS: dict[str, str] = {
    "tenant": "tenant", "project": "tenant || '/' || project", "tag": "unnest(tags)",
    "route": "route", "deployment": "deployment", "provider": "provider", "key": "key_id",
}
_FILTERS: dict[str, str] = {
    "tenant": "tenant = ?", "project": "project = ?", "user": '"user" = ?', "route": "route = ?",
    "deployment": "deployment = ?", "provider": "provider = ?", "region": "region = ?",
    "tag": "? = ANY(tags)",
}
_IS_ERROR = "(status >= 400 OR error_type <> '')"
MAX_TOP_USERS = 1000
DEFAULT_DAYS = 30


@dataclass(frozen=True, slots=True)
class Span:
    """``[since_ms, until_ms)`` in unix milliseconds; None leaves that end open."""

    since_ms: int | None = None
    until_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Period:
    """A period as people ask for it: ``since`` inclusive, ``until`` exclusive (None: open), both UTC."""

    since: datetime
    until: datetime | None

    @property
    def span(self) -> Span:
        return Span(int(self.since.timestamp() * 1000), int(self.until.timestamp() * 1000) if self.until else None)

    def to_json(self) -> dict[str, Any]:
        return {"since": self.since.isoformat(), "until": self.until.isoformat() if self.until else None}


# Times a report may start or end at: a year of days either side stays within ``datetime``'s years 1 to 9999 (the
# dashboard's axis spans up to 366 days from ``since``), which a time zone offset alone can leave.
EARLIEST = datetime(2, 1, 1, tzinfo=UTC)
LATEST = datetime(9998, 1, 1, tzinfo=UTC)


def parse_time(value: str, name: str) -> datetime:
    """An ISO date or time from a query, as UTC (a naive one is taken as UTC), from ``EARLIEST`` to ``LATEST``."""
    try:
        parsed = datetime.fromisoformat(value)
        parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        shown = value if len(value) <= 64 else value[:64] + '...'  # client input, cut short
        raise InvalidRequest(f"{name}: expected an ISO date or time, got {shown!r}") from exc
    if not EARLIEST <= parsed <= LATEST:
        raise InvalidRequest(f"{name}: expected a time from {EARLIEST.year:04d} to {LATEST.year:04d}")
    return parsed


def parse_period(query: Mapping[str, str], now: datetime, default_days: int = DEFAULT_DAYS) -> Period:
    """``since``/``until`` (ISO, UTC) from a query; without ``since``, the ``default_days`` days up to today."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    since = parse_time(query["since"], "since") if query.get("since") else today - timedelta(days=default_days - 1)
    until = parse_time(query["until"], "until") if query.get("until") else None
    if until is not None and until <= since:
        raise InvalidRequest("until must be after since")
    return Period(since, until)


def parse_filters(query: Mapping[str, str]) -> dict[Filter, str]:
    """The report filters present (and non-empty) in a query."""
    return {cast(Filter, name): query[name] for name in FILTERS if query.get(name)}


@dataclass(frozen=True, slots=True)
class DailyCost:
    day: date
    group: str
    requests: int
    input_tokens: int
    output_tokens: int
    cost_pico: int


@dataclass(frozen=True, slots=True)
class HourlyCost:
    """One group's requests and cost in one UTC hour (``hour`` is its start, aware)."""

    hour: datetime
    group: str
    requests: int
    cost_pico: int


@dataclass(frozen=True, slots=True)
class RankedCost:
    """One group's totals over a period (a key is named by its ApiKey resource name, never a secret)."""

    group: str
    requests: int
    input_tokens: int
    output_tokens: int
    cost_pico: int


@dataclass(frozen=True, slots=True)
class DailyLatency:
    """Quantiles of total latency and of time to first byte, in ms, over one day's successful requests."""

    day: date
    group: str
    requests: int
    p50_ms: float
    p95_ms: float
    ttfb_p50_ms: float
    ttfb_p95_ms: float


@dataclass(frozen=True, slots=True)
class DailyErrors:
    day: date
    group: str
    requests: int
    errors: int

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True, slots=True)
class UserTotal:
    """One end user's totals; users are named within their tenant, so the tenant is part of the identity."""

    tenant: str
    user: str
    requests: int
    input_tokens: int
    output_tokens: int
    cost_pico: int


# The parts ``TokenKinds.parts`` splits tokens into, in order: uncached input, the two kinds of cache traffic,
# output that is not reasoning, reasoning.
TOKEN_PARTS = ("uncached input", "cache read", "cache write", "non-reasoning output", "reasoning")


@dataclass(frozen=True, slots=True)
class TokenKinds:
    """One group's tokens of each kind billed apart, summed over a period. As in a usage record, cache reads
    (``cached_input_tokens``) and cache writes (both rates) are parts of ``input_tokens``, reasoning is part of
    ``output_tokens``."""

    group: str
    requests: int
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_pico: int

    def parts(self) -> dict[str, int]:
        """The tokens split into kinds that do not overlap (they add up to input plus output): what a stacked
        figure shows. Parts are clamped as cost is (``dataplane.core.accounting.cost_pico``), so an upstream that
        reported more cached than input tokens never makes a part negative."""
        cached = min(self.cached_input_tokens, self.input_tokens)
        writes = min(self.cache_write_tokens, self.input_tokens - cached)
        reasoning = min(self.reasoning_tokens, self.output_tokens)
        amounts = (self.input_tokens - cached - writes, cached, writes, self.output_tokens - reasoning, reasoning)
        return dict(zip(TOKEN_PARTS, amounts, strict=True))

Query = tuple[str, list[object]]


def _where(span: Span, filters: Mapping[Filter, str] | None, *extra: str) -> Query:
    conditions, params = list(extra), list[object]()
    if span.since_ms is not None:
        conditions.append("ts >= epoch_ms(?)")
        params.append(span.since_ms)
    if span.until_ms is not None:
        conditions.append("ts < epoch_ms(?)")
        params.append(span.until_ms)
    for name, value in (filters or {}).items():
        if name not in _FILTERS:
            raise ValueError(f"filters must be among {FILTERS}, got {name!r}")
        conditions.append(_FILTERS[name])
        params.append(value)
    return (" WHERE " + " AND ".join(conditions) if conditions else ""), params


def _group(by: str, allowed: tuple[str, ...]) -> str:
    if by not in allowed:
        raise ValueError(f"by must be one of {allowed}, got {by!r}")
    return _GROUPS[by]


def daily_cost_query(by: CostDimension, span: Span, filters: Mapping[Filter, str] | None = None) -> Query:
    """Per day and group: requests, tokens and cost. By ``tag``, a request counts once under each of its tags."""
    group = _group(by, COST_DIMENSIONS)
    where, params = _where(span, filters)
    sql = (f"SELECT day, grp, count(*), sum(input_tokens), sum(output_tokens), sum(cost_pico) FROM ("
           f"SELECT CAST(ts AS DATE) AS day, {group} AS grp, input_tokens, output_tokens, cost_pico "
           f"FROM usage_events{where}) AS e GROUP BY day, grp ORDER BY day, sum(cost_pico) DESC, grp")
    return sql, params


def hourly_cost_query(by: CostDimension, span: Span, filters: Mapping[Filter, str] | None = None) -> Query:
    """Per UTC hour and group: requests and cost (what the "last 24 h" chart shows)."""
    group = _group(by, COST_DIMENSIONS)
    where, params = _where(span, filters)
    sql = (f"SELECT hour, grp, count(*), sum(cost_pico) FROM ("
           f"SELECT date_trunc('hour', ts) AS hour, {group} AS grp, cost_pico FROM usage_events{where}) AS e "
           "GROUP BY hour, grp ORDER BY hour, sum(cost_pico) DESC, grp")
    return sql, params


def ranked_cost_query(by: RankDimension, span: Span, filters: Mapping[Filter, str] | None = None) -> Query:
    """Per group over the span: requests, tokens and cost, biggest cost first (every group: the caller keeps the
    top few and sums the rest, so "others" is exact). Requests without the dimension (no key) are left out."""
    group = _group(by, RANK_DIMENSIONS)
    where, params = _where(span, filters, "key_id <> ''" if by == "key" else "TRUE")
    sql = (f"SELECT {group} AS grp, count(*), sum(input_tokens), sum(output_tokens), sum(cost_pico) "
           f"FROM usage_events{where} GROUP BY grp ORDER BY sum(cost_pico) DESC, grp")
    return sql, params


def latency_query(by: ModelDimension, span: Span, filters: Mapping[Filter, str] | None = None) -> Query:
    group = _group(by, MODEL_DIMENSIONS)
    where, params = _where(span, filters, f"NOT {_IS_ERROR}")
    sql = (f"SELECT CAST(ts AS DATE) AS day, {group} AS grp, count(*), "
           "percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY latency_ms), "  # one sort per column
           "percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY ttfb_ms) "
           f"FROM usage_events{where} GROUP BY day, grp ORDER BY day, grp")
    return sql, params


def errors_query(by: ErrorDimension, span: Span, filters: Mapping[Filter, str] | None = None) -> Query:
    group = _group(by, ERROR_DIMENSIONS)
    where, params = _where(span, filters)
    sql = (f"SELECT CAST(ts AS DATE) AS day, {group} AS grp, count(*), count(*) FILTER (WHERE {_IS_ERROR}) "
           f"FROM usage_events{where} GROUP BY day, grp ORDER BY day, grp")
    return sql, params


def top_users_query(span: Span, order: UserOrder = "cost", limit: int = 10,
                    filters: Mapping[Filter, str] | None = None) -> Query:
    """The ``limit`` users with the highest cost (or most requests); requests without a user are left out."""
    if order not in USER_ORDERS:
        raise ValueError(f"order must be one of {USER_ORDERS}, got {order!r}")
    if not 1 <= limit <= MAX_TOP_USERS:
        raise ValueError(f"limit must be between 1 and {MAX_TOP_USERS}")
    where, params = _where(span, filters, "\"user\" <> ''")
    first, second = ("sum(cost_pico)", "count(*)") if order == "cost" else ("count(*)", "sum(cost_pico)")
    sql = (f'SELECT tenant, "user", count(*), sum(input_tokens), sum(output_tokens), sum(cost_pico) '
           f'FROM usage_events{where} GROUP BY tenant, "user" '
           f'ORDER BY {first} DESC, {second} DESC, tenant, "user" LIMIT {int(limit)}')
    return sql, params


def token_kinds_query(by: TokenDimension, span: Span, filters: Mapping[Filter, str] | None = None) -> Query:
    """Per group over the whole span: requests, tokens of each kind and cost, biggest cost first."""
    group = _group(by, TOKEN_DIMENSIONS)
    where, params = _where(span, filters)
    sql = (f"SELECT {group} AS grp, count(*), sum(input_tokens), sum(cached_input_tokens), sum(cache_write_tokens), "
           f"sum(output_tokens), sum(reasoning_tokens), sum(cost_pico) FROM usage_events{where} "
           "GROUP BY grp ORDER BY sum(cost_pico) DESC, grp")
    return sql, params


def _ints(row: tuple[Any, ...]) -> list[int]:
    return [int(v or 0) for v in row]


def _utc(value: datetime) -> datetime:
    """A TIMESTAMP (naive, UTC by the schema, on both engines) as an aware datetime."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ms(value: Any) -> float:
    return round(float(value), 1) if value is not None else 0.0


class Analytics:
    """The reports over one open ``UsageDB``. Holds nothing but the database; task-safe as it is."""

    def __init__(self, db: UsageDB) -> None:
        self._db = db

    async def daily_cost(self, by: CostDimension, span: Span,
                         filters: Mapping[Filter, str] | None = None) -> list[DailyCost]:
        rows = await self._db.fetch(*daily_cost_query(by, span, filters))
        return [DailyCost(r[0], str(r[1]), *_ints(r[2:])) for r in rows]

    async def hourly_cost(self, by: CostDimension, span: Span,
                          filters: Mapping[Filter, str] | None = None) -> list[HourlyCost]:
        rows = await self._db.fetch(*hourly_cost_query(by, span, filters))
        return [HourlyCost(_utc(r[0]), str(r[1]), int(r[2]), int(r[3] or 0)) for r in rows]

    async def ranked_cost(self, by: RankDimension, span: Span,
                          filters: Mapping[Filter, str] | None = None) -> list[RankedCost]:
        rows = await self._db.fetch(*ranked_cost_query(by, span, filters))
        return [RankedCost(str(r[0]), *_ints(r[1:])) for r in rows]

    async def latency(self, by: ModelDimension, span: Span,
                      filters: Mapping[Filter, str] | None = None) -> list[DailyLatency]:
        rows = await self._db.fetch(*latency_query(by, span, filters))
        return [DailyLatency(r[0], str(r[1]), int(r[2]), *(_ms(v) for v in [*r[3], *r[4]])) for r in rows]

    async def errors(self, by: ErrorDimension, span: Span,
                     filters: Mapping[Filter, str] | None = None) -> list[DailyErrors]:
        rows = await self._db.fetch(*errors_query(by, span, filters))
        return [DailyErrors(r[0], str(r[1]), int(r[2]), int(r[3])) for r in rows]

    async def top_users(self, span: Span, order: UserOrder = "cost", limit: int = 10,
                        filters: Mapping[Filter, str] | None = None) -> list[UserTotal]:
        rows = await self._db.fetch(*top_users_query(span, order, limit, filters))
        return [UserTotal(str(r[0]), str(r[1]), *_ints(r[2:])) for r in rows]

    async def token_kinds(self, by: TokenDimension, span: Span,
                          filters: Mapping[Filter, str] | None = None) -> list[TokenKinds]:
        rows = await self._db.fetch(*token_kinds_query(by, span, filters))
        return [TokenKinds(str(r[0]), *_ints(r[1:])) for r in rows]


def totals(rows: Sequence[DailyCost]) -> dict[str, int]:
    """Cost per group over all days, biggest first: the order a legend or a stacked chart should use."""
    sums: dict[str, int] = {}
    for row in rows:
        sums[row.group] = sums.get(row.group, 0) + row.cost_pico
    return dict(sorted(sums.items(), key=lambda kv: (-kv[1], kv[0])))
