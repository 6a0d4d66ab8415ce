"""``providers``: how the fleet's data planes see each provider's deployments (healthy, ejected, down, no
credential), and why when not healthy."""

from __future__ import annotations

from typing import Any

from cli.errors import exit_on_error
from cli.options import AdminTokenOpt, ControlPlaneOpt, OutputOpt, connect
from cli.render.output import OutputFormat, providers_table, show_items


def providers(
    output: OutputOpt = OutputFormat.table,
    control_plane: ControlPlaneOpt = None,
    admin_token: AdminTokenOpt = None,
) -> None:
    """Deployment health per provider and data plane: state, ejections in a row, time to first byte.

    States: healthy, trial (the next request tests it), ejected (backing off after failures), provider-down
    (the active check cannot reach it), no-credential (the data plane lacks the provider's credential: the
    variable, the AWS profile or credential chain, the Google key file; never routed to there). An unhealthy
    state shows since when and why. Data planes report it on their discovery stream every few seconds; -o wide
    adds consecutive failures and the back-off left.
    """
    with exit_on_error():
        answer = connect(control_plane, admin_token).providers()
        items: list[dict[str, Any]] = [i for i in answer.get("items") or [] if isinstance(i, dict)]
        show_items(items, answer, output, providers_table, "No data plane has reported deployment health.",
                   wide=lambda rows: providers_table(rows, wide=True))
