"""Pure units of the money path: the worst-case bound, the data plane's budget book, the ledger's transitions."""

from __future__ import annotations

import calendar
import time

import pytest

from controlplane.money.ledger import AskIn, BatchMarker, ScopeState, grant, reclaim, settle
from dataplane.core.cost_bound import DEFAULT_OUTPUT_BOUND, prompt_token_bound, worst_case_pico
from dataplane.core.limits.budget import BudgetBook, Reservation
from dataplane.errors import ApiError
from dataplane.snapshot.runtime import Deployment, Prices, Provider
from tollway.budget_scopes import BudgetIndex, BudgetLimit, next_period_start, period_of
from tollway.pb import snapshot_pb2 as pb

pytestmark = pytest.mark.pure

JAN = float(calendar.timegm((2025, 1, 15, 12, 0, 0)))
FEB = float(calendar.timegm((2025, 2, 1, 0, 0, 0)))


def deployment(inp: int = 1_000_000, out: int = 2_000_000, max_out: int = 0, ptype: str = "openai") -> Deployment:
    prov = Provider("p", ptype, "http://x", "eu", 1, 1, "", 0, 0, None)
    return Deployment("d", prov, "m", frozenset(), 0, max_out, Prices.of(inp, out, 0))


@pytest.mark.parametrize(("payload", "at_least"), [
    ({"messages": [{"role": "user", "content": "héllo wörld"}]}, len("héllo wörld".encode())),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "x" * 100},
                                                {"type": "image_url", "image_url": {"url": "data:" + "A" * 10**6}}]}]},
     100 + 1600),
    ({"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "f"}}]},
     16),
])
def test_prompt_bound_covers_text_bytes_and_images_but_not_image_data(payload: dict[str, object],
                                                                      at_least: int) -> None:
    bound = prompt_token_bound(payload, "openai")
    assert bound >= at_least
    assert bound < 200_000  # a megabyte of base64 image is not counted as text


def test_worst_case_uses_max_tokens_n_and_the_dearest_candidate() -> None:
    payload = {"messages": [{"role": "user", "content": "a"}], "max_tokens": 100, "n": 2}
    cheap, dear = deployment(out=1_000_000), deployment(out=3_000_000)
    prompt = prompt_token_bound(payload, "openai")
    assert worst_case_pico(payload, [cheap, dear]) == (prompt * 1 + 200 * 3) * 1_000_000  # pico-dollars, exact
    no_max = {"messages": [{"role": "user", "content": "a"}]}
    assert worst_case_pico(no_max, [deployment(out=1_000_000, max_out=500)]) == (prompt + 500) * 1_000_000
    assert worst_case_pico(no_max, [deployment(out=1_000_000)]) == (prompt + DEFAULT_OUTPUT_BOUND) * 1_000_000
    assert worst_case_pico(payload, []) == 0


def test_periods_are_utc_months() -> None:
    assert period_of(JAN) == "2025-01" and period_of(FEB) == "2025-02" and period_of(FEB - 0.001) == "2025-01"
    assert next_period_start(JAN) == FEB


def index(monthly: int = 1_000, safe: int = 0, soft: int = 80) -> BudgetIndex:
    snap = pb.Snapshot(version="v1", tenants=[pb.Tenant(
        name="acme", budget=pb.Budget(monthly_micros=monthly, soft_percent=soft, safe_allowance_micros=safe),
        per_user_budget=pb.Budget(monthly_micros=100), project_policies=[
            pb.ProjectPolicy(name="web", budget=pb.Budget(monthly_micros=500))])],
        keys=[pb.ApiKey(id="k1", tenant="acme", budget=pb.Budget(monthly_micros=300))])
    return BudgetIndex.of(snap)


def test_scopes_of_a_request() -> None:
    idx = index()
    names = [s.name for s in idx.scopes_for("acme", "web", "k1", "al/ice")]
    assert names == ["tenant/acme", "project/acme/web", "key/k1", "user/acme/al%2Fice"]
    assert [s.name for s in idx.scopes_for("acme", "", "k2", "")] == ["tenant/acme"]
    assert idx.limit_of("user/acme/bob") == BudgetLimit(100 * 1_000_000, 100, 0)  # declared in micros, kept in pico
    assert idx.limit_of("tenant/none") is None


def granted_book(amount: int, now: float = JAN, **kw: int) -> BudgetBook:
    book = BudgetBook()
    book.set_index(index(**kw))
    for ask in book.asks(now):
        book.apply(ask.scope, ask.period, limited=True, granted=amount, remaining=0, expires_at=now + 10,
                   answered_at=now)
    return book


def test_room_held_elsewhere_is_exhaustion_only_after_the_others_had_time_to_yield() -> None:
    book = granted_book(100)
    assert isinstance(book.reserve("acme", "", "k9", "", 60, JAN), Reservation)
    # Answers short of one request while the pool is empty: the other data planes hold the rest, and are told to
    # yield at their next ask (within a second). A data plane that asks again at once must not call it exhausted.
    for t in (JAN + 0.1, JAN + 0.2, JAN + 1.0):
        book.apply("tenant/acme", "2025-01", limited=True, granted=100, remaining=0, expires_at=t + 10, answered_at=t)
        refused = book.reserve("acme", "", "k9", "", 60, t)
        assert isinstance(refused, ApiError) and refused.code == "budget_rebalancing"
    book.apply("tenant/acme", "2025-01", limited=True, granted=100, remaining=0, expires_at=JAN + 13,
               answered_at=JAN + 4)
    refused = book.reserve("acme", "", "k9", "", 60, JAN + 4)
    assert isinstance(refused, ApiError) and refused.code == "tenant_budget_exceeded"
    # An answer with room ends the streak.
    book.apply("tenant/acme", "2025-01", limited=True, granted=200, remaining=0, expires_at=JAN + 14,
               answered_at=JAN + 5)
    assert isinstance(book.reserve("acme", "", "k9", "", 60, JAN + 5), Reservation)


def test_book_reserves_within_the_grant_and_settles_the_difference_back() -> None:
    book = granted_book(100)
    first = book.reserve("acme", "", "k9", "", 60, JAN)
    assert isinstance(first, Reservation)
    refused = book.reserve("acme", "", "k9", "", 60, JAN)
    # The budget has room, held by other data planes: retryable, never an exhaustion code.
    assert isinstance(refused, ApiError) and (refused.status, refused.code) == (429, "budget_rebalancing")
    a = book.allowance("tenant/acme", "2025-01")
    assert a is not None
    book.apply("tenant/acme", "2025-01", limited=True, granted=100, remaining=0, expires_at=JAN + 10, answered_at=JAN,
               fleet_spent=a.limit.monthly_pico - 100)  # now only this grant is left anywhere
    exhausted = book.reserve("acme", "", "k9", "", 60, JAN)
    assert isinstance(exhausted, ApiError) and (exhausted.status, exhausted.code) == (429, "tenant_budget_exceeded")
    assert exhausted.type == "insufficient_quota"
    book.settle(first, 25)
    book.settle(first, 25)  # settling twice changes nothing
    a = book.allowance("tenant/acme", "2025-01")
    assert a is not None and (a.spent, a.reserved) == (25, 0)
    assert isinstance(book.reserve("acme", "", "k9", "", 75, JAN), Reservation)
    assert isinstance(book.reserve("acme", "", "k9", "", 1, JAN), ApiError)


def test_book_refuses_once_the_lease_expires_unless_a_safe_allowance_is_declared() -> None:
    book = granted_book(100)
    expired = book.reserve("acme", "", "k9", "", 1, JAN + 11)
    assert isinstance(expired, ApiError) and (expired.status, expired.code) == (503, "budget_lease_expired")
    safe = granted_book(100, safe=5)  # 5 micro-dollars: 5,000,000 pico-dollars
    assert isinstance(safe.reserve("acme", "", "k9", "", 5_000_000, JAN + 11), Reservation)
    assert isinstance(safe.reserve("acme", "", "k9", "", 1, JAN + 11), ApiError)
    fresh = BudgetBook()
    fresh.set_index(index())
    pending = fresh.reserve("acme", "", "k9", "", 1, JAN)
    assert isinstance(pending, ApiError) and pending.code == "budget_lease_pending"


def test_a_refusal_in_one_scope_reserves_nothing_in_the_others() -> None:
    book = granted_book(1_000)
    assert isinstance(book.reserve("acme", "", "k1", "", 50, JAN), ApiError)  # the key's lease: not yet granted
    book.apply("key/k1", "2025-01", limited=True, granted=10, remaining=0, expires_at=JAN + 10, answered_at=JAN)
    refused = book.reserve("acme", "", "k1", "", 50, JAN)
    assert isinstance(refused, ApiError) and refused.code == "budget_rebalancing"  # the key's budget has room
    a = book.allowance("tenant/acme", "2025-01")
    assert a is not None and a.reserved == 0


def test_month_rollover_starts_a_new_allowance_and_releases_the_old() -> None:
    end_of_jan = FEB - 2
    book = granted_book(100, now=end_of_jan)
    r = book.reserve("acme", "", "k9", "", 100, end_of_jan)
    assert isinstance(r, Reservation)
    book.settle(r, 60)
    assert isinstance(book.reserve("acme", "", "k9", "", 41, end_of_jan), ApiError)
    asks = {(a.scope, a.period): a for a in book.asks(FEB)}
    assert asks[("tenant/acme", "2025-01")].release and asks[("tenant/acme", "2025-02")].want > 0
    book.apply("tenant/acme", "2025-02", limited=True, granted=100, remaining=0, expires_at=FEB + 10, answered_at=FEB)
    assert isinstance(book.reserve("acme", "", "k9", "", 100, FEB), Reservation)


def test_demand_sizes_the_want() -> None:
    book = granted_book(10_000_000, monthly=10_000_000)
    for _ in range(100):
        r = book.reserve("acme", "", "k9", "", 1_000, JAN)
        assert isinstance(r, Reservation)
        book.settle(r, 500)
    want = {a.scope: a.want for a in book.asks(JAN + 1)}["tenant/acme"]
    assert want > 10_000_000 // 20  # 100k micro-USD/s of reservations beats the idle floor


def test_a_grant_far_above_demand_is_given_back_only_while_the_control_plane_answers() -> None:
    granted = 10**9  # the whole budget, far above the idle want (1/20 of it)
    book = granted_book(granted)
    a = book.allowance("tenant/acme", "2025-01")
    assert a is not None
    # The control plane is away (or this process has not been answered yet): a release it would never hear of
    # must not shrink the grant here, or the rest of it is stranded until the control plane is back.
    assert not any(x.release for x in book.asks(JAN + 1, may_give_back=False))
    assert a.granted == granted
    released = {x.scope: x for x in book.asks(JAN + 2)}["tenant/acme"]
    assert released.release and a.granted == released.want < granted


def test_after_a_clean_stop_a_restart_counts_what_was_spent_not_everything_checked_out() -> None:
    book = BudgetBook(durable=True)
    book.set_index(index())
    for x in book.asks(JAN):
        book.apply(x.scope, x.period, limited=True, granted=800_000, remaining=0, expires_at=JAN + 60, answered_at=JAN)
    book.commit_checkout(book.plan_checkout(JAN) or [])
    r = book.reserve("acme", "", "k9", "", 1_000, JAN)
    assert isinstance(r, Reservation)
    book.settle(r, 700)
    crashed, stopped = BudgetBook(durable=True), BudgetBook(durable=True)
    for b, saved in ((crashed, book.saved()), (stopped, book.spent_so_far())):
        b.set_index(index())
        b.restore(saved, JAN + 1)
    before, after_crash, after_stop = (x.allowance("tenant/acme", "2025-01") for x in (book, crashed, stopped))
    assert before is not None and after_crash is not None and after_stop is not None
    assert after_crash.spent == before.checked_out > 700  # it may all have been spent
    assert after_stop.spent == 700


def ask(spent: int = 0, reserved: int = 0, want: int = 0, release: bool = False) -> AskIn:
    return AskIn("tenant/acme", "2025-01", spent, reserved, want, release)


def test_ledger_grants_never_exceed_what_remains() -> None:
    st = ScopeState()
    # The first holder gets half of what is free: a data plane that has not asked yet finds room.
    assert grant(st, "a", "i1", ask(want=700), 1_000, JAN, 10, 30) == (500, 500)
    assert grant(st, "b", "i1", ask(want=700), 1_000, JAN, 10, 30)[0] == 250  # half of what is left: 2 active
    assert st.spent + st.outstanding() <= 1_000
    settle(st, "a", 400, None)
    assert (st.spent, st.holders["a"].outstanding()) == (400, 100)
    granted, _ = grant(st, "a", "i1", ask(spent=400, want=100, release=True), 1_000, JAN, 10, 30)
    assert granted == 500 and st.spent + st.outstanding() <= 1_000


def test_ledger_reclaims_expired_grants_and_orphans_of_a_restarted_node() -> None:
    st = ScopeState()
    grant(st, "a", "i1", ask(want=600), 1_000, JAN, 10, 30)
    grant(st, "a", "i2", ask(want=100), 1_000, JAN + 1, 10, 30)  # restarted: the old 500 is an orphan
    assert st.holders["a"].orphan == 500 and st.outstanding() == 600
    settle(st, "a", 50, None)  # the old process's spooled usage pays the orphan first
    assert st.holders["a"].orphan == 450 and st.holders["a"].settled == 0
    reclaim(st, JAN + 100, 30)
    assert st.outstanding() == 0 and st.spent == 50


def test_ledger_lower_limit_shrinks_to_committed_and_soft_alert_fires_once() -> None:
    st = ScopeState()
    grant(st, "a", "i1", ask(want=900), 1_000, JAN, 10, 30)  # 500: half of what is free
    assert grant(st, "a", "i1", ask(spent=100, reserved=50), 400, JAN, 10, 30)[0] == 150
    limit = BudgetLimit(1_000, 80, 0)
    assert not settle(st, "a", 700, limit)
    assert settle(st, "a", 100, limit)
    assert not settle(st, "a", 100, limit)


def test_batch_marker_settles_each_sequence_once_in_any_order() -> None:
    m = BatchMarker()
    for seq in (1, 3, 2, 5):
        assert not m.is_settled(seq)
        m.mark(seq)
    assert m.through == 3 and m.above == [5]
    assert all(m.is_settled(s) for s in (1, 2, 3, 5)) and not m.is_settled(4)
    assert BatchMarker.from_json(m.to_json()) == m


def test_a_yield_is_freed_only_once_the_yielder_shows_what_it_reserved_meanwhile() -> None:
    st = ScopeState()
    grant(st, "a", "i1", AskIn("tenant/acme", "2025-01", 0, 0, 600, False, 10), 1_000, JAN, 10, 30)  # a: 500
    grant(st, "b", "i1", AskIn("tenant/acme", "2025-01", 0, 0, 600, False, 600), 1_000, JAN, 10, 30)  # b: 500, short
    assert "b" in st.starving
    # a asks having committed 100; it is told to keep 100 + one request (10). While that answer travels it
    # reserves up to its old 500: the 390 it yields must not be handed to b yet.
    grant(st, "a", "i1", AskIn("tenant/acme", "2025-01", 0, 100, 600, False, 10), 1_000, JAN + 0.5, 10, 30)
    assert st.holders["a"].granted == 110 and st.spent + st.outstanding() == 1_000
    grant(st, "b", "i1", AskIn("tenant/acme", "2025-01", 0, 0, 600, False, 600), 1_000, JAN + 0.6, 10, 30)
    assert st.holders["b"].granted == 500  # unchanged: nothing was free
    # a's next ask shows 300 reserved meanwhile: that much stays a's, the rest is free for b.
    grant(st, "a", "i1", AskIn("tenant/acme", "2025-01", 0, 300, 0, False, 10), 1_000, JAN + 1.5, 10, 30)
    assert st.holders["a"].outstanding() >= 300
    grant(st, "b", "i1", AskIn("tenant/acme", "2025-01", 0, 0, 600, False, 600), 1_000, JAN + 1.6, 10, 30)
    assert st.holders["b"].granted > 500 and st.spent + st.outstanding() <= 1_000


def test_period_of_is_the_utc_month_on_both_sides_of_every_month_edge() -> None:
    # The month is remembered between calls: asking in any order must never return the previous answer.
    edges = [calendar.timegm((y, m, 1, 0, 0, 0)) for y in (2025, 2026) for m in range(1, 13)]
    times = [t + d for t in edges for d in (-0.001, 0.0, 0.5)] + [edges[5], edges[1] - 1, edges[20], 1.0, 0.0]
    for t in times:
        assert period_of(t) == time.strftime("%Y-%m", time.gmtime(t)), t
