"""The compliance report: flows from the compiled policy (residency included), DPA and retention, logging modes."""

from __future__ import annotations

from pathlib import Path

from controlplane.policy.compile import PolicySet
from controlplane.policy.compliance import build_report, render_markdown, tenant_flows
from tests.compliance.helpers import cli_env, control_plane, run, write_yaml
from tests.core.policy_docs import example_resources, model, policy_of, provider, route, tenant

DOCS = [
    provider("signed-eu", "eu", compliance={"dpaSigned": True, "retentionDays": 0}),
    provider("unsigned-us", "us", compliance={"dpaSigned": False, "retentionDays": 30}),
    provider("mock-us", "us", type_="mock"),
    model("m-eu", "signed-eu"), model("m-us", "unsigned-us"), model("m-mock", "mock-us"),
    route("chat", "m-eu", "m-us"), route("us-only", "m-us"), route("test", "m-mock"),
    tenant("eu-only", "eu", logging={"content": "redacted", "redactBeforeProvider": True, "retentionDays": 400}),
    tenant("global", "eu", "us", routes=["chat", "test"], logging={"content": "full", "retentionDays": 30}),
]


def test_flows_respect_tenant_regions_and_allowed_routes() -> None:
    flows = {(f.tenant, f.route, f.provider): f.via_regions for f in tenant_flows(policy_of(*DOCS))}
    assert flows == {
        ("eu-only", "chat", "signed-eu"): ("eu",),  # never the us provider: not in its regions
        ("global", "chat", "signed-eu"): ("eu", "us"),
        ("global", "chat", "unsigned-us"): ("eu", "us"),
        ("global", "test", "mock-us"): ("eu", "us"),
    }


def test_findings_flag_a_missing_dpa_but_not_a_mock_provider() -> None:
    report = build_report(policy_of(*DOCS), 7, "2025-01-01T00:00:00Z")
    problems = [f.message for f in report.findings if f.severity == "problem"]
    assert problems == ["data of tenant global may reach provider unsigned-us (region us, routes chat) without a "
                        "signed DPA"]
    notices = " / ".join(f.message for f in report.findings if f.severity == "notice")
    assert "provider unsigned-us keeps request data for 30 days and tenant global does not redact" in notices
    assert "prompts and responses of tenant global are logged in full and kept 30 days" in notices
    assert "eu-only" not in notices  # routes us-only is not reachable for it, but it is not an allowed route
    assert "mock-us" not in " ".join(problems)


def test_markdown_has_providers_tenants_and_flows() -> None:
    markdown = render_markdown(build_report(policy_of(*DOCS), 7, "2025-01-01T00:00:00Z"))
    assert markdown.startswith("# Tollway compliance report\n")
    assert "Policy revision 7, generated 2025-01-01T00:00:00Z." in markdown
    assert "| unsigned-us | openai | us | **NO** | 30 | global |" in markdown
    assert "| signed-eu | openai | eu | yes | 0 | eu-only, global |" in markdown
    assert "| eu-only | eu | PII redacted | yes | 400 | signed-eu |" in markdown
    assert "| global | eu, us | in full | no | 30 | mock-us, signed-eu, unsigned-us |" in markdown
    assert "### eu-only\n\n| Route | Deployment | Provider | Provider region | Via data planes in |" in markdown
    assert "| chat | m-eu | signed-eu | eu | eu |" in markdown
    assert "1 problem(s)." in markdown


def test_the_example_policy_keeps_payments_data_in_the_eu() -> None:
    report = build_report(PolicySet.of(example_resources()), 1, "now")
    payments = {f.provider_region for f in report.flows if f.tenant == "payments"}
    assert payments == {"eu"}
    assert not [f for f in report.findings if f.severity == "problem"]


async def test_gatectl_compliance_report_writes_the_markdown(tmp_path: Path) -> None:
    async with control_plane(tmp_path) as (cp, _):
        env = cli_env(tmp_path, cp)
        applied = await run(env, "apply", "-f", str(write_yaml(tmp_path / "p.yaml", *DOCS)))
        assert applied.returncode == 0, applied.stderr

        out = tmp_path / "report.md"
        written = await run(env, "compliance", "report", "-o", str(out))
        assert written.returncode == 0, written.stderr
        assert f"compliance report for revision 1 written to {out}" in written.stderr
        assert "problem: data of tenant global may reach provider unsigned-us" in written.stderr
        text = out.read_text()
        assert "Policy revision 1" in text and "| unsigned-us | openai | us | **NO** | 30 | global |" in text

        printed = await run(env, "compliance", "report")
        assert printed.returncode == 0 and printed.stdout == text.replace(
            text.split("generated ")[1].split(".")[0], printed.stdout.split("generated ")[1].split(".")[0])
        strict = await run(env, "compliance", "report", "--strict")
        assert strict.returncode == 1 and strict.stdout.startswith("# Tollway compliance report")

        refused = await run(env, "compliance", "report", "--admin-token", "wrong")
        assert refused.returncode == 3 and "invalid admin token" in refused.stderr
