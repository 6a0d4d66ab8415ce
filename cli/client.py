"""A small synchronous client of the control plane's admin API (docs/admin-api.md).

Foreign errors (urllib, sockets, JSON) are translated here, and only here, into ``cli.errors``: an answer the
server refused (4xx) becomes ``Refused`` (``PolicyRejected`` for 422 with problems), everything that means
"the control plane is not there or broke" (connection errors, timeouts, 5xx, non-JSON answers) ``Unavailable``.
The client is stateless apart from its settings, so one instance may be shared by threads.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cli.errors import PolicyRejected, Problem, Refused, Unavailable

DEFAULT_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class RawProblem:
    """A 422 problem as the server reports it; ``source`` is what we sent (``file#N``)."""

    source: str
    kind: str
    name: str
    field: str
    message: str


def problem_from_source(raw: RawProblem) -> Problem:
    """Map a server problem back to the file and document number encoded in its ``source``."""
    file, sep, number = raw.source.rpartition("#")
    if sep and number.isdigit():
        return Problem(file, int(number), raw.kind, raw.name, raw.field, raw.message)
    return Problem(raw.source, None, raw.kind, raw.name, raw.field, raw.message)


class AdminClient:
    def __init__(self, base_url: str, token: str | None, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = timeout

    def get_resources(self, kind: str, name: str | None = None) -> dict[str, Any]:
        query = {"kind": kind} | ({"name": name} if name else {})
        return self._call("GET", "/admin/v1/resources", query=query)

    def apply(
        self, documents: Sequence[Mapping[str, Any]], dry_run: bool, who: str, expected_revision: int | None = None,
        with_bodies: bool = False,
    ) -> dict[str, Any]:
        body = {"documents": list(documents), "dryRun": dry_run, "expectedRevision": expected_revision, "who": who}
        if with_bodies:  # each change's canonical before and after, besides its diff
            body["withBodies"] = True
        return self._call("POST", "/admin/v1/apply", body=body)

    def start_rollout(self, documents: Sequence[Mapping[str, Any]], who: str, canary: str,
                      promote_after: str | None, abort_if: str | None) -> dict[str, Any]:
        body = {"documents": list(documents), "who": who, "canary": canary, "promoteAfter": promote_after,
                "abortIf": abort_if}
        return self._call("POST", "/admin/v1/rollout", body=body)

    def rollout_status(self) -> dict[str, Any]:
        return self._call("GET", "/admin/v1/rollout")

    def end_rollout(self, action: str, who: str, reason: str) -> dict[str, Any]:
        return self._call("POST", f"/admin/v1/rollout/{action}", body={"who": who, "reason": reason})

    def plan(self, documents: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """What each region's data planes would receive if ``documents`` were applied (nothing is written)."""
        return self._call("POST", "/admin/v1/plan", body={"documents": list(documents)})

    def replay(self, documents: Sequence[Mapping[str, Any]], since_ms: int, until_ms: int, seed: int = 0,
               on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Recorded traffic of [since_ms, until_ms) replayed through the current policy and the one ``documents``
        make (``POST /admin/v1/replay``): the report. The answer streams as NDJSON; ``on_progress(done, total)``
        sees each progress line."""
        body = {"documents": list(documents), "sinceMs": since_ms, "untilMs": until_ms, "seed": seed}
        total = 0
        for item in self._stream("POST", "/admin/v1/replay", body):
            if "report" in item and isinstance(item["report"], dict):
                report: dict[str, Any] = item["report"]
                return report
            if "error" in item:
                error = item["error"] if isinstance(item["error"], dict) else {}
                raise Unavailable(f"the control plane failed: {error.get('message') or 'replay failed'}")
            if isinstance(item.get("total"), int):
                total = item["total"]
            if isinstance(item.get("done"), int) and on_progress is not None:
                on_progress(item["done"], total)
        raise Unavailable("the control plane ended the replay without a report")

    def _stream(self, method: str, path: str, body: object) -> Iterator[dict[str, Any]]:
        """The JSON lines of a streamed (NDJSON) answer; errors translated as ``_call`` does."""
        headers = {"Accept": "application/x-ndjson", "Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        request = urllib.request.Request(self.base_url + path, data=json.dumps(body).encode("utf-8"),
                                         headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                for line in response:
                    if line.strip():
                        yield self._decode(response.status, line)
        except urllib.error.HTTPError as exc:
            raise self._refusal(exc.code, exc.read()) from None
        except urllib.error.URLError as exc:
            raise Unavailable(f"cannot reach the control plane at {self.base_url}: {_reason(exc.reason)}") from None
        except TimeoutError:
            raise Unavailable(f"the control plane at {self.base_url} did not answer in {self._timeout:g}s") from None
        except (ConnectionError, OSError) as exc:
            raise Unavailable(f"cannot reach the control plane at {self.base_url}: {_reason(exc)}") from None

    def delete(self, kind: str, name: str, who: str) -> dict[str, Any]:
        path = f"/admin/v1/resources/{urllib.parse.quote(kind)}/{urllib.parse.quote(name)}"
        return self._call("DELETE", path, query={"who": who})

    def create_key(
        self, name: str, tenant: str, project: str | None, routes: Sequence[str], expires_at: int | None, who: str,
        budget: Mapping[str, Any] | None = None, rate_limits: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        body = {"name": name, "tenant": tenant, "project": project, "routes": list(routes), "expiresAt": expires_at,
                "budget": dict(budget) if budget else None, "rateLimits": dict(rate_limits) if rate_limits else None,
                "who": who}
        return self._call("POST", "/admin/v1/keys", body=body)

    def rotate_key(self, name: str, overlap_seconds: int, who: str) -> dict[str, Any]:
        path = f"/admin/v1/keys/{urllib.parse.quote(name, safe='')}/rotate"
        return self._call("POST", path, body={"overlapSeconds": overlap_seconds, "who": who})

    def revoke_key(self, name: str, who: str) -> dict[str, Any]:
        return self._call("POST", f"/admin/v1/keys/{urllib.parse.quote(name, safe='')}/revoke", body={"who": who})

    def history(self) -> dict[str, Any]:
        return self._call("GET", "/admin/v1/history")

    def controlplane_status(self) -> dict[str, Any]:
        return self._call("GET", "/admin/v1/controlplane")

    def rollback(self, to_revision: int, who: str, *, dry_run: bool = False, include_keys: bool = False,
                 expected_revision: int | None = None) -> dict[str, Any]:
        body = {"toRevision": to_revision, "who": who, "dryRun": dry_run, "includeKeys": include_keys,
                "expectedRevision": expected_revision}
        return self._call("POST", "/admin/v1/rollback", body=body)

    def dataplanes(self) -> dict[str, Any]:
        return self._call("GET", "/admin/v1/dataplanes")

    def usage(self, query: Mapping[str, str]) -> dict[str, Any]:
        return self._call("GET", "/admin/v1/usage", query=query)

    def analytics(self, report: str, query: Mapping[str, str]) -> dict[str, Any]:
        """One of the reports under /admin/v1/analytics/ (daily-cost, latency, errors, top-users)."""
        return self._call("GET", f"/admin/v1/analytics/{urllib.parse.quote(report)}", query=query)

    def audit(self, query: Mapping[str, str]) -> dict[str, Any]:
        return self._call("GET", "/admin/v1/audit", query=query)

    def audit_verify(self, query: Mapping[str, str]) -> dict[str, Any]:
        return self._call("GET", "/admin/v1/audit/verify", query=query)

    def compliance_report(self) -> dict[str, Any]:
        return self._call("GET", "/admin/v1/compliance/report", query={"format": "json"})

    def providers(self) -> dict[str, Any]:
        return self._call("GET", "/admin/v1/providers")

    def alerts(self, query: Mapping[str, str]) -> dict[str, Any]:
        return self._call("GET", "/admin/v1/alerts", query=query)

    def snapshots(self) -> dict[str, Any]:
        return self._call("GET", "/admin/v1/snapshots")

    def healthz(self) -> dict[str, Any]:
        return self._call("GET", "/healthz")

    def _call(
        self, method: str, path: str, query: Mapping[str, str] | None = None, body: object = None
    ) -> dict[str, Any]:
        url = self.base_url + path + (("?" + urllib.parse.urlencode(query)) if query else "")
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                return self._decode(response.status, response.read())
        except urllib.error.HTTPError as exc:
            raise self._refusal(exc.code, exc.read()) from None
        except urllib.error.URLError as exc:
            raise Unavailable(f"cannot reach the control plane at {self.base_url}: {_reason(exc.reason)}") from None
        except TimeoutError:
            raise Unavailable(f"the control plane at {self.base_url} did not answer in {self._timeout:g}s") from None
        except (ConnectionError, OSError) as exc:
            raise Unavailable(f"cannot reach the control plane at {self.base_url}: {_reason(exc)}") from None

    def _decode(self, status: int, payload: bytes) -> dict[str, Any]:
        try:
            decoded = json.loads(payload) if payload else {}
        except ValueError:
            raise Unavailable(f"the control plane answered {status} with something that is not JSON") from None
        if not isinstance(decoded, dict):
            raise Unavailable(f"the control plane answered {status} with an unexpected JSON value")
        return decoded

    def _refusal(self, status: int, payload: bytes) -> Exception:
        try:
            decoded = json.loads(payload) if payload else {}
        except ValueError:
            decoded = {}
        error = decoded.get("error") if isinstance(decoded, dict) else None
        error = error if isinstance(error, dict) else {}
        code = str(error.get("type") or error.get("code") or "")
        message = str(error.get("message") or f"HTTP {status}")
        if status >= 500:
            return Unavailable(f"the control plane failed ({status}): {message}")
        # The problems live in the error object; accept them beside it too, the doc allows either reading.
        raw = error.get("problems", decoded.get("problems") if isinstance(decoded, dict) else None)
        if status == 422 and isinstance(raw, list):
            problems = [problem_from_source(_raw_problem(p)) for p in raw if isinstance(p, dict)]
            return PolicyRejected(message, problems)
        if status == 401:
            message = f"{message} (set --admin-token, TOLLWAY_ADMIN_TOKEN or adminToken in the config file)"
        if status == 409 and code == "conflict":  # a lost race; already_exists and in_use say what to do
            message = (f"{message}: the policy changed while this command ran (another write won); "
                       "nothing was changed, run it again")
        return Refused(status, code, message)


def _raw_problem(p: Mapping[str, Any]) -> RawProblem:
    return RawProblem(
        source=str(p.get("source") or ""), kind=str(p.get("kind") or ""), name=str(p.get("name") or ""),
        field=str(p.get("field") or ""), message=str(p.get("message") or ""),
    )


def _reason(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason)
