"""Health of upstream deployments: passive outlier detection, observed latency, and the planner's demotion rule.

``Health`` keeps one small record per deployment (by name, so it survives snapshot swaps):

- **Passive outlier detection** (after Envoy's consecutive-5xx ejection): ``failed`` counts consecutive
  failures that say the upstream is unwell (connect, timeout, 5xx, a malformed answer, a stream that died);
  at ``eject_after`` the deployment is ejected for ``base_ejection_s * 2**(n-1)`` (n = ejections in a row,
  capped at ``max_ejection_s``). When the back-off ends, the breaker is half-open: the next attempt on it is the
  one trial (others keep demoting it while the trial is in flight); ``succeeded`` closes the breaker, a failure
  ejects it again for twice as long. 429s and client errors say nothing about health and are not counted.
- **Active checks** (``dataplane.upstream.probe``) mark whole providers down or up; a provider that comes back
  ends its deployments' back-off early, so the next request is their trial.
- **Credentials**: when a snapshot is installed, each provider's credential is resolved locally
  (``dataplane.upstream.credentials``, never on the request path) and the providers without one are handed to
  ``credentials_checked``. Their deployments are ``no-credential``: never healthy, and left out of every plan
  (an attempt could only fail here, without reaching the upstream).
- **Latency**: an EWMA of the observed time to first byte, for the ``latency`` strategy and ``cheapest`` ties.

Every unhealthy state carries its reason and since when: the last failure that counted (ejected, trial), the
active check's finding (provider down), the credential source that failed (no credential).

The planner's rule (``demote``): candidates keep their strategy order, the ones without a credential are dropped,
and the unavailable ones (ejected, trial in flight, provider down) move to the end, in that order. They stay in
the plan as a last resort: when every candidate is unavailable, trying one is better than refusing a request that
might succeed, and the attempt doubles as a trial. Residency is not affected: only the candidates the tenant may
use are ever here.

Every operation is O(1) per deployment and allocates nothing once a deployment's record exists. Task-safe on
one event loop; owned by the application (``create_app``), never module state.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from dataplane.errors import FailureKind

if TYPE_CHECKING:
    from dataplane.snapshot.runtime import Deployment, Runtime

# Failures that count against a deployment's health.
UNHEALTHY_KINDS: frozenset[str] = frozenset({"connect", "timeout", "5xx", "protocol"})


@dataclass(frozen=True, slots=True)
class HealthSettings:
    eject_after: int = 3  # consecutive failures
    base_ejection_s: float = 2.0
    max_ejection_s: float = 60.0
    ewma_alpha: float = 0.3  # weight of the newest observation
    stale_trial_s: float = 30.0  # a trial that never reported (cancelled) stops blocking after this long


class DeploymentHealth:
    """The record of one deployment. Mutated only by ``Health``."""

    __slots__ = ("ejected_since", "ejected_until", "ejections", "failures", "last_error", "provider", "trial_since",
                 "ttfb_ewma")

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.failures = 0  # consecutive
        self.ejections = 0  # in a row, without a success between them
        self.ejected_until = 0.0  # monotonic seconds; 0: never ejected or closed again
        self.ejected_since = 0.0  # monotonic seconds the breaker opened (first ejection of the run)
        self.trial_since = 0.0  # monotonic seconds a half-open trial started; 0: none in flight
        self.ttfb_ewma = 0.0  # seconds; 0: not measured yet
        self.last_error = ""  # the message of the last failure that counted (no secret: ``UpstreamFailure``'s)

    @property
    def is_ejected(self) -> bool:
        """The breaker is open or half-open (not yet closed by a success)."""
        return self.ejected_until > 0.0


State = Literal["healthy", "trial", "ejected", "provider-down", "no-credential"]


@dataclass(frozen=True, slots=True)
class DeploymentView:
    """What ``gatectl providers`` and the metrics show of one deployment."""

    deployment: str
    provider: str
    state: State
    consecutive_failures: int
    ejections: int
    ejected_for_s: float
    ttfb_ewma_s: float
    reason: str = ""  # why it is not healthy; empty when healthy
    since_unix_s: float = 0.0  # since when (wall clock); 0 when healthy


class Health:
    def __init__(self, settings: HealthSettings | None = None) -> None:
        self.settings = settings or HealthSettings()
        self._records: dict[str, DeploymentHealth] = {}
        # Providers the active checker found unreachable: name -> (monotonic s first found down, what it found).
        self._down: dict[str, tuple[float, str]] = {}
        # Providers whose credential this data plane lacks (the installed snapshot's): name -> (since, reason).
        self._no_credential: dict[str, tuple[float, str]] = {}
        self._open = 0  # deployments whose breaker is not closed: when 0 (the usual case), demote is a no-op
        # Failed attempts by (provider, kind), every kind (for /metrics: oversized or garbage answers are
        # "protocol", stream deadlines "timeout").
        self.failure_counts: dict[tuple[str, str], int] = {}

    def _record(self, dep: Deployment) -> DeploymentHealth:
        rec = self._records.get(dep.name)
        if rec is None:
            rec = self._records[dep.name] = DeploymentHealth(dep.provider.name)
        return rec

    # -- what the planner asks

    def is_available(self, dep: Deployment, now: float) -> bool:
        if self._down and dep.provider.name in self._down:
            return False
        if self._no_credential and dep.provider.name in self._no_credential:
            return False
        rec = self._records.get(dep.name)
        if rec is None or rec.ejected_until == 0.0:
            return True
        if now < rec.ejected_until:
            return False
        # Half-open: available to one trial at a time.
        return rec.trial_since == 0.0 or now - rec.trial_since > self.settings.stale_trial_s

    def ttfb(self, dep: Deployment) -> float:
        rec = self._records.get(dep.name)
        return rec.ttfb_ewma if rec is not None else 0.0

    def demote(self, ordered: Sequence[Deployment], now: float) -> list[Deployment]:
        """``ordered`` without the candidates that have no credential here, the unavailable ones moved to the end
        (stable). O(len(ordered)); empty when no candidate has a credential (see ``credential_problem``)."""
        if not self._open and not self._down and not self._no_credential:
            return ordered if isinstance(ordered, list) else list(ordered)
        missing = self._no_credential
        ok: list[Deployment] = []
        later: list[Deployment] = []
        for dep in ordered:
            if missing and dep.provider.name in missing:
                continue
            (ok if self.is_available(dep, now) else later).append(dep)
        return ok + later if later else ok

    def credential_problem(self, dep: Deployment) -> str:
        """Why ``dep`` has no credential on this data plane ("" when it has one)."""
        found = self._no_credential.get(dep.provider.name) if self._no_credential else None
        return found[1] if found is not None else ""

    # -- what the attempt reports

    def attempting(self, dep: Deployment, now: float) -> None:
        """An attempt on ``dep`` starts: if its back-off is over, this attempt is the trial."""
        rec = self._records.get(dep.name)
        if rec is not None and rec.ejected_until != 0.0 and now >= rec.ejected_until:
            rec.trial_since = now

    def succeeded(self, dep: Deployment, ttfb_s: float | None = None) -> None:
        rec = self._record(dep)
        rec.failures = 0
        if rec.ejected_until != 0.0:
            rec.ejected_until = 0.0
            rec.ejections = 0
            rec.trial_since = 0.0
            self._open -= 1
        if ttfb_s is not None:
            ewma = rec.ttfb_ewma
            rec.ttfb_ewma = ttfb_s if ewma == 0.0 else ewma + self.settings.ewma_alpha * (ttfb_s - ewma)

    def failed(self, dep: Deployment, kind: FailureKind | str, now: float, error: str = "") -> None:
        """An attempt on ``dep`` failed; ``error`` is the failure's message (``UpstreamFailure.message``: no secret),
        kept as the reason shown while the deployment is unwell."""
        key = (dep.provider.name, kind)
        self.failure_counts[key] = self.failure_counts.get(key, 0) + 1
        if kind not in UNHEALTHY_KINDS:
            return
        rec = self._record(dep)
        rec.failures += 1
        rec.last_error = error or kind
        trial = rec.ejected_until != 0.0 and now >= rec.ejected_until
        if trial or (rec.ejected_until == 0.0 and rec.failures >= self.settings.eject_after):
            s = self.settings
            if rec.ejected_until == 0.0:
                self._open += 1
                rec.ejected_since = now
            rec.ejections += 1
            rec.ejected_until = now + min(s.base_ejection_s * 2 ** (rec.ejections - 1), s.max_ejection_s)
            rec.trial_since = 0.0

    # -- what the active checker reports

    def provider_checked(self, provider: str, healthy: bool, now: float, error: str = "") -> None:
        """The active check's finding; ``error`` says what it found when ``healthy`` is false (no URL, no secret)."""
        if not healthy:
            since = self._down.get(provider, (now, ""))[0]
            self._down[provider] = (since, error or "the active check failed")
            return
        self._down.pop(provider, None)
        for rec in self._records.values():
            if rec.provider == provider and rec.ejected_until > now:
                rec.ejected_until = now  # back-off over: the next request is the trial

    def is_provider_down(self, provider: str) -> bool:
        return provider in self._down

    # -- what the snapshot's install reports

    def credentials_checked(self, problems: Mapping[str, str], now: float) -> None:
        """The providers of the snapshot just installed that have no credential here, with the reason naming the
        source that failed; every other provider has one. Called on the event loop as the snapshot is adopted.
        A provider that stays without a credential (for the same reason) keeps its "since"."""
        before = self._no_credential
        self._no_credential = {
            name: before[name] if name in before and before[name][1] == reason else (now, reason)
            for name, reason in problems.items()
        }

    # -- what operators see

    def view(self, deployments: Iterable[Deployment], now: float, wall: float | None = None) -> list[DeploymentView]:
        """Every deployment's state with its reason; ``now`` is the monotonic clock, ``wall`` the unix time that
        corresponds to it (default: the current one), to say since when."""
        offset = (time.time() if wall is None else wall) - now
        out = []
        for dep in deployments:
            rec = self._records.get(dep.name)
            provider = dep.provider.name
            state: State
            reason, since = "", 0.0
            if provider in self._no_credential:
                state = "no-credential"
                since, reason = self._no_credential[provider]
            elif provider in self._down:
                state = "provider-down"
                since, reason = self._down[provider]
            elif rec is None or rec.ejected_until == 0.0:
                state = "healthy"
            else:
                state = "ejected" if now < rec.ejected_until else "trial"
                since, reason = rec.ejected_since, rec.last_error
            out.append(DeploymentView(
                dep.name, provider, state, rec.failures if rec else 0, rec.ejections if rec else 0,
                max(0.0, rec.ejected_until - now) if rec and rec.ejected_until else 0.0,
                rec.ttfb_ewma if rec else 0.0, reason, round(since + offset, 3) if state != "healthy" else 0.0))
        return out


def usable_deployments(runtime: Runtime) -> list[Deployment]:
    """The deployments some tenant may use from this data plane (the ones health is kept and shown for)."""
    seen: dict[str, Deployment] = {}
    for candidates in runtime.tenant_candidates.values():
        for c in candidates:
            seen.setdefault(c.deployment.name, c.deployment)
    return list(seen.values())


class RetryBudget:
    """Retries allowed over a sliding window: at most ``ratio`` of the requests, but always ``min_per_s``/s.

    After Envoy's retry budgets and gRPC's retry throttling: when an upstream fails for everyone, a gateway
    that retries every request doubles the load on the remaining ones; the budget caps that. Per-second
    buckets with running totals, so both calls are O(1) amortised and allocate nothing. Task-safe on one loop.
    """

    __slots__ = ("_min", "_ratio", "_requests", "_retries", "_second", "_total_requests", "_total_retries",
                 "_window")

    def __init__(self, ratio: float = 0.2, min_per_s: float = 3.0, window_s: int = 10) -> None:
        self._ratio = ratio
        self._min = min_per_s * window_s
        self._window = window_s
        self._requests = [0] * window_s
        self._retries = [0] * window_s
        self._second = 0  # the newest bucket's second
        self._total_requests = 0
        self._total_retries = 0

    def _advance(self, now: float) -> int:
        second = int(now)
        if second != self._second:
            steps = min(second - self._second, self._window) if second > self._second else self._window
            for i in range(1, steps + 1):
                b = (self._second + i) % self._window
                self._total_requests -= self._requests[b]
                self._total_retries -= self._retries[b]
                self._requests[b] = self._retries[b] = 0
            self._second = second
        return second % self._window

    def request(self, now: float) -> None:
        """A request starts its first attempt."""
        b = self._advance(now)
        self._requests[b] += 1
        self._total_requests += 1

    def try_retry(self, now: float) -> bool:
        """Whether one more attempt may go out; if so it is counted."""
        b = self._advance(now)
        if self._total_retries >= max(self._min, self._ratio * self._total_requests):
            return False
        self._retries[b] += 1
        self._total_retries += 1
        return True
