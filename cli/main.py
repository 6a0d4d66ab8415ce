"""The ``gatectl`` command: the typer app wiring every command group (``python -m cli.main`` works too).

Exit codes and error messages are documented and produced in ``cli.errors``.
"""

from __future__ import annotations

import typer

from cli.commands import history, keys, plan, policy, providers, rollout, shell
from cli.commands.reports import alerts, audit, compliance, usage
from cli.commands.reports import report as reports
from cli.commands.run import serve, up

EPILOG = ("Exit codes: 0 ok, 1 diff or plan found changes, 2 usage or validation error, 3 the control plane "
          "refused the request (invalid policy, a name that exists, a delete of something still referred to), 4 the "
          "control plane is unreachable or failed, 5 a --fail-on condition held. "
          "Control plane: --control-plane > $TOLLWAY_CONTROL_PLANE > config file ($TOLLWAY_CONFIG or "
          "~/.config/tollway/config.yaml: controlPlane, adminToken) > http://127.0.0.1:7070.")


def build_app() -> typer.Typer:
    # Plain click help (no rich markup, which would eat "[env ...]"), laid out wide; completion by typer's classes.
    shell.enable_completion()
    app = typer.Typer(
        name=shell.PROG_NAME, epilog=EPILOG, no_args_is_help=True, pretty_exceptions_enable=False,
        add_completion=False, rich_markup_mode=None, context_settings=shell.help_settings(),
    )
    app.callback()(shell.root)
    app.command()(policy.apply)
    app.command()(policy.diff)
    app.command()(plan.plan)
    app.command()(policy.get)
    app.command()(policy.delete)
    app.add_typer(keys.keys_app, name="keys")
    app.command()(history.history)
    app.command()(history.rollback)
    app.command()(history.dataplanes)
    app.command()(providers.providers)
    app.command()(alerts.alerts)
    app.command()(usage.usage)
    app.add_typer(audit.audit_app, name="audit")
    app.add_typer(rollout.rollout_app, name="rollout")
    app.add_typer(compliance.compliance_app, name="compliance")
    app.add_typer(reports.report_app, name="report")
    app.add_typer(serve.controlplane_app, name="controlplane")
    app.add_typer(serve.dataplane_app, name="dataplane")
    app.command()(up.up)
    app.command()(shell.completion)
    return app


app = build_app()

if __name__ == "__main__":
    app(prog_name=shell.PROG_NAME)
