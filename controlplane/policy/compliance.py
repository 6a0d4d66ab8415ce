"""The compliance report: which tenant's data may reach which provider, where, under which terms, and how the
gateway logs and keeps it. Computed from the current policy; ``GET /admin/v1/compliance/report`` serves it.

Residency is not worked out again here: the flows come from the compiled snapshots (``build_snapshots``, the very
function whose output the data planes serve), narrowed per tenant exactly as the data plane's runtime narrows a
route's candidates (``dataplane.snapshot.runtime``: a deployment is a candidate for a tenant only when its provider's
region is one of the tenant's regions). A flow is what *may* happen: keys can narrow routes further, never widen.

Pure (``build_report``, ``render_markdown``) but for the HTTP handler at the bottom.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import orjson
from aiohttp import web

from controlplane.policy.compile import PolicySet, build_snapshots
from controlplane.policy.repository import Repository

Severity = Literal["problem", "notice"]


@dataclass(frozen=True)
class Flow:
    """Tenant data may go through ``route`` to ``deployment`` at ``provider`` (in ``provider_region``), entering
    through data planes of ``via_regions``."""

    tenant: str
    route: str
    deployment: str
    provider: str
    provider_region: str
    via_regions: tuple[str, ...]


@dataclass(frozen=True)
class Finding:
    severity: Severity
    tenant: str
    message: str


@dataclass(frozen=True)
class Report:
    revision: int
    generated_at: str
    policy: PolicySet
    flows: tuple[Flow, ...]
    findings: tuple[Finding, ...]

    def providers_of(self, tenant: str) -> list[str]:
        return sorted({f.provider for f in self.flows if f.tenant == tenant})

    def tenants_of(self, provider: str) -> list[str]:
        return sorted({f.tenant for f in self.flows if f.provider == provider})


def tenant_flows(policy: PolicySet) -> list[Flow]:
    """Every (tenant, route, deployment) a data plane would let a tenant's request reach, from the snapshots."""
    found: dict[tuple[str, str, str], tuple[str, str, set[str]]] = {}
    snapshots = build_snapshots(policy)
    if not isinstance(snapshots, dict):  # the repository writes only consistent policy: a hand-edited store
        raise ValueError("the stored policy is inconsistent: " + "; ".join(map(str, snapshots[:5])))
    for region, snap in snapshots.items():
        deployments = {d.name: d for d in snap.deployments}
        providers = {p.name: p for p in snap.providers}
        for tenant in snap.tenants:
            allowed = set(tenant.routes)
            for route in snap.routes:
                if allowed and route.name not in allowed:
                    continue
                for name in route.deployments:
                    provider = providers[deployments[name].provider]
                    if provider.region not in tenant.regions:  # the data plane's per-tenant filter
                        continue
                    key = (tenant.name, route.name, name)
                    found.setdefault(key, (provider.name, provider.region, set()))[2].add(region)
    return [Flow(t, r, d, p, pr, tuple(sorted(via))) for (t, r, d), (p, pr, via) in sorted(found.items())]


def findings_of(policy: PolicySet, flows: Iterable[Flow]) -> list[Finding]:
    """Problems (data may reach a provider without a signed DPA) first, then notices, each sorted by tenant."""
    flows = list(flows)
    out: list[Finding] = []
    for name in sorted(policy.tenants):
        tenant = policy.tenants[name]
        logging = tenant.spec.logging
        mine = [f for f in flows if f.tenant == name]
        for provider_name in sorted({f.provider for f in mine}):
            provider = policy.providers[provider_name].spec
            routes = ", ".join(sorted({f.route for f in mine if f.provider == provider_name}))
            if provider.type == "mock":  # answers inside the data plane: no data leaves the gateway
                continue
            if not provider.compliance.dpa_signed:
                out.append(Finding("problem", name, f"data of tenant {name} may reach provider {provider_name} "
                                                    f"(region {provider.region}, routes {routes}) without a signed "
                                                    "DPA"))
            if provider.compliance.retention_days > 0 and not logging.redact_before_provider:
                out.append(Finding("notice", name, f"provider {provider_name} keeps request data for "
                                                   f"{provider.compliance.retention_days} days and tenant {name} "
                                                   "does not redact PII before sending it"))
        if not mine:
            out.append(Finding("notice", name, f"tenant {name} can reach no deployment in its regions "
                                               f"({', '.join(tenant.spec.regions)}): every request is refused"))
        unserved = sorted(set(tenant.spec.routes) - {f.route for f in mine})
        if unserved:
            out.append(Finding("notice", name, f"routes allowed to tenant {name} with no deployment in its "
                                               f"regions (refused, never forwarded): {', '.join(unserved)}"))
        if logging.content == "full":
            out.append(Finding("notice", name, f"prompts and responses of tenant {name} are logged in full and "
                                               f"kept {logging.retention_days} days"))
    return sorted(out, key=lambda f: (f.severity != "problem", f.tenant))


def build_report(policy: PolicySet, revision: int, generated_at: str) -> Report:
    flows = tenant_flows(policy)
    return Report(revision, generated_at, policy, tuple(flows), tuple(findings_of(policy, flows)))


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ") or "-"


def _table(headers: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


_CONTENT = {"none": "not logged", "hashed": "keyed hashes (HMAC)", "redacted": "PII redacted", "full": "in full"}


def render_markdown(report: Report) -> str:
    policy = report.policy
    problems = [f for f in report.findings if f.severity == "problem"]
    lines = [
        "# Tollway compliance report", "",
        f"Policy revision {report.revision}, generated {report.generated_at}. "
        "Flows are what the compiled policy allows (keys may narrow them further, never widen them).", "",
        "## Findings", "",
    ]
    if not report.findings:
        lines.append("No problems found.")
    lines += [f"- **{f.severity.upper()}**: {f.message}" for f in report.findings]
    lines += ["", f"{len(problems)} problem(s).", "", "## Providers", ""]
    lines += _table(
        ["Provider", "Type", "Region", "DPA signed", "Provider retention (days)", "Used by tenants"],
        [[name, p.spec.type, p.spec.region, "yes" if p.spec.compliance.dpa_signed else "**NO**",
          p.spec.compliance.retention_days, ", ".join(report.tenants_of(name)) or "(none)"]
         for name, p in sorted(policy.providers.items())])
    lines += ["", "## Tenants", ""]
    lines += _table(
        ["Tenant", "Regions allowed", "Content logging", "Redact before provider", "Usage retention (days)",
         "Providers reachable"],
        [[name, ", ".join(t.spec.regions), _CONTENT[t.spec.logging.content],
          "yes" if t.spec.logging.redact_before_provider else "no", t.spec.logging.retention_days,
          ", ".join(report.providers_of(name)) or "(none)"]
         for name, t in sorted(policy.tenants.items())])
    lines += ["", "## Data flows", ""]
    for name in sorted(policy.tenants):
        mine = [f for f in report.flows if f.tenant == name]
        lines += [f"### {name}", ""]
        if not mine:
            lines += ["No deployment is reachable.", ""]
            continue
        lines += _table(["Route", "Deployment", "Provider", "Provider region", "Via data planes in"],
                        [[f.route, f.deployment, f.provider, f.provider_region, ", ".join(f.via_regions)]
                         for f in mine])
        lines.append("")
    lines += [
        "## Usage data", "",
        "Usage events (identifiers, token counts, cost, latency, status; never prompt or response content) are "
        "stored in the control plane's DuckDB and deleted once older than the tenant's usage retention above "
        "(checked hourly and at start). Events of tenants no longer in the policy keep the default retention.", "",
    ]
    return "\n".join(lines)


REPOSITORY = web.AppKey("compliance_repository", Repository)


async def _report(request: web.Request) -> web.Response:
    state = await request.app[REPOSITORY].state()
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    report = build_report(state.policy, state.generation, now)
    markdown = render_markdown(report)
    if request.query.get("format") == "json":
        body = {"revision": report.revision, "generatedAt": report.generated_at, "markdown": markdown,
                "findings": [{"severity": f.severity, "tenant": f.tenant, "message": f.message}
                             for f in report.findings]}
        return web.Response(body=orjson.dumps(body), content_type="application/json")
    return web.Response(text=markdown, content_type="text/markdown")


def add_compliance_routes(app: web.Application, repository: Repository) -> None:
    """``GET /admin/v1/compliance/report``: Markdown, or ``?format=json`` for ``{markdown, findings, ...}``."""
    app[REPOSITORY] = repository
    app.router.add_get("/admin/v1/compliance/report", _report)
