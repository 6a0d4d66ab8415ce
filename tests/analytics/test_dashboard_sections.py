"""The dashboard's operational sections, pure: budget arithmetic, rankings with "others", empty and bounded
tables, the hour axis, deployment rows with and without a reason. No event loop needed."""

from __future__ import annotations

import calendar
import re
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from controlplane.admin.dashboard import sections as ds
from controlplane.admin.dashboard.data import fleet_of, hour_range, hourly_series
from controlplane.money.budget_status import ScopeBudget, budget_limits, budget_statuses, projected
from controlplane.usage.analytics import HourlyCost, RankedCost
from tollway.budget_scopes import BudgetLimit
from tollway.pb import snapshot_pb2 as pb

pytestmark = pytest.mark.pure

PICO = 10**12
DEC_1 = calendar.timegm((2026, 12, 1, 0, 0, 0))
JAN_1 = calendar.timegm((2027, 1, 1, 0, 0, 0))


def budget(tenant: str, usd: int, project: str = "") -> ScopeBudget:
    return ScopeBudget("project" if project else "tenant", tenant, project, BudgetLimit(usd * PICO, 80, 0))


@pytest.mark.parametrize(("spent", "week", "now", "expected"), [
    (0, 0, DEC_1, 0),
    (5 * PICO, 0, DEC_1 + 86_400, 5 * PICO),                      # no recent spend: nothing more to come
    (0, 7 * PICO, DEC_1, 31 * PICO),                              # $1 a day for all of December
    (10 * PICO, 7 * PICO, JAN_1 - 86_400, 11 * PICO),             # one day left
    (10 * PICO, 7 * PICO, JAN_1 - 1, 10 * PICO + 7 * PICO // (7 * 86_400)),  # one second left, floored
    (3, 1, DEC_1, 7),                                             # 3 + 31/7 pico, floored: never rounded up
])
def test_projection_adds_the_last_weeks_pace_to_the_month_end(spent: int, week: int, now: int, expected: int) -> None:
    assert projected(spent, week, now) == expected


def test_statuses_put_the_most_at_risk_first_and_survive_a_zero_limit() -> None:
    budgets = [budget("calm", 100), budget("hot", 100), budget("zero", 0), budget("hot", 10, "web")]
    ledger = {"tenant/calm": (10 * PICO, PICO), "tenant/hot": (50 * PICO, 0), "project/hot/web": (2 * PICO, 0)}
    week = {"tenant/hot": 70 * PICO, "project/hot/web": 7 * PICO}
    rows = budget_statuses(budgets, ledger, week, DEC_1 + 15 * 86_400)
    # projected: hot 50 + 16 days x 10 = 210 of 100; hot/web 2 + 16 x 1 = 18 of 10; calm 10 of 100; zero 0 of 0
    assert [r.budget.scope for r in rows] == ["tenant/hot", "project/hot/web", "tenant/calm", "tenant/zero"]
    hot = rows[0]
    assert (hot.spent_pico, hot.burn_per_day_pico, hot.projected_pico) == (50 * PICO, 10 * PICO, 210 * PICO)
    assert hot.will_exceed and not rows[2].will_exceed
    zero = rows[3]
    assert (zero.used_percent, zero.projected_percent) == (0.0, 0.0)
    assert rows[2].held_pico == PICO


def test_budget_limits_list_a_tenant_served_in_two_regions_once() -> None:
    tenant = pb.Tenant(name="acme", budget=pb.Budget(monthly_micros=5_000_000),
                       project_policies=[pb.ProjectPolicy(name="web", budget=pb.Budget(monthly_micros=1_000_000)),
                                         pb.ProjectPolicy(name="free")])
    limits = budget_limits([pb.Snapshot(tenants=[tenant]), pb.Snapshot(tenants=[tenant, pb.Tenant(name="nobudget")])])
    assert [(b.scope, b.limit.monthly_pico) for b in limits] == [("project/acme/web", PICO), ("tenant/acme", 5 * PICO)]


def test_rank_keeps_the_top_and_sums_the_rest_exactly() -> None:
    rows = [RankedCost(f"key-{i}", i, 10 * i, i, (20 - i) * PICO) for i in range(12)]
    ranking = ds.rank(rows, 10)
    assert [r.group for r in ranking.rows] == [f"key-{i}" for i in range(10)]
    assert ranking.others == RankedCost("others", 21, 210, 21, 19 * PICO)
    assert ranking.others_count == 2
    assert ds.rank(rows[:3]).others is None


def extras(**changes: object) -> ds.Extras:
    empty = ds.Extras(as_of=DEC_1, budgets=[], fleet=ds.Fleet([], []), hours=hour_range(datetime.now(UTC)),
                      hourly={}, hourly_requests=0, hourly_cost_pico=0, cost_by="tenant",
                      top_keys=ds.rank([]), top_projects=ds.rank([]))
    return replace(empty, **changes)  # type: ignore[arg-type]


def test_empty_sections_say_so_without_nan() -> None:
    markup = "".join([ds.budgets_section(extras()), ds.health_section(extras()), ds.hourly_section(extras()),
                      ds.top_section("top-keys", "Top keys by cost", "key", extras().top_keys),
                      ds.budgets_section(extras(budgets=None)), ds.health_section(extras(fleet=None))])
    assert "No tenant or project has a budget." in markup and "No data plane has connected yet." in markup
    assert "No data for cost per tenant per hour" in markup and "No data for top keys by cost" in markup
    assert "Budgets are not available here." in markup and "Fleet health is not available here." in markup
    assert not re.search(r"NaN|inf|None", markup)


def test_big_tables_stay_bounded_and_say_how_many_more() -> None:
    many = budget_statuses([budget(f"team-{i:03d}", 100) for i in range(100)],
                           {f"tenant/team-{i:03d}": (i * PICO, 0) for i in range(100)}, {}, DEC_1)
    markup = ds.budgets_section(extras(budgets=many))
    assert markup.count("<tr data-scope=") == ds.TOP_ROWS
    assert f"{100 - ds.TOP_ROWS} more tenant budgets" in markup and 'data-scope="tenant/team-099"' in markup
    planes = [ds.DataPlaneRow(f"dp-{i}", "eu", "v1", "v1", "ACK", "", "now", True) for i in range(40)]
    planes.append(ds.DataPlaneRow("dp-bad", "eu", "v0", "v1", "NACK", "bad route", "now", True))
    health = ds.health_section(extras(fleet=ds.Fleet(planes, [])))
    assert health.count("<tr data-node=") == ds.TOP_ROWS and 'data-node="dp-bad"' in health  # the NACK first
    assert "26 more data planes" in health and "behind" in health and "bad route" in health


def test_hour_axis_and_series() -> None:
    hours = hour_range(datetime(2026, 12, 2, 10, 42, tzinfo=UTC))
    assert len(hours) == 24 and hours[0] == datetime(2026, 12, 1, 11, tzinfo=UTC)
    assert hours[-1] == datetime(2026, 12, 2, 10, tzinfo=UTC)
    rows = [HourlyCost(hours[-1], f"team-{i}", 1, (i + 1) * 10**6) for i in range(10)]
    series = hourly_series(rows)
    assert list(series)[:2] == ["team-9", "team-8"] and len(series) == 9
    assert series["other"] == {hours[-1]: 3.0}  # team-0 and team-1, in micro-dollars


def test_fleet_rows_show_a_reason_when_the_data_plane_sends_one() -> None:
    records = [{"nodeId": "dp-1", "region": "eu", "version": "v1", "status": "ACK", "error": "", "lastSeen": "t",
                "connected": True, "health": [
                    {"deployment": "a", "provider": "p", "state": "ejected", "reason": "5 consecutive 502s",
                     "since": DEC_1},
                    {"deployment": "b", "provider": "p", "state": "trial"}]}]  # from a data plane sending neither
    fleet = fleet_of(records, {"eu": "v2"})
    assert [(d.deployment, d.reason, d.since) for d in fleet.deployments] == [("a", "5 consecutive 502s", DEC_1),
                                                                              ("b", "", None)]
    markup = ds.health_section(extras(fleet=fleet))
    cells = re.findall(r'<tr data-node="dp-1" data-deployment="(\w)"[^>]*>(.*?)</tr>', markup)
    texts = {d: re.findall(r"<td[^>]*>([^<]*)", row) for d, row in cells}
    assert texts["a"][3:7] == ["ejected", "open", "5 consecutive 502s", "2026-12-01 00:00:00 UTC"]
    assert texts["b"][3:7] == ["trial", "half-open", "trial", "-"]  # no reason sent: the state
