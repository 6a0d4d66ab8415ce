"""Options shared by the commands that talk to the control plane, and how they become a client.

Every such command accepts ``--control-plane`` and ``--admin-token`` after its name (kubectl style), so the
flags work wherever the user puts them; ``cli.config`` decides what wins over the environment and config file.
"""

from __future__ import annotations

import getpass
import os
from typing import Annotated

import typer

from cli.client import AdminClient
from cli.config import load_client_config
from cli.render.output import OutputFormat

ControlPlaneOpt = Annotated[
    str | None,
    typer.Option("--control-plane", help="Admin API URL [env TOLLWAY_CONTROL_PLANE; default http://127.0.0.1:7070]",
                 show_default=False),
]
AdminTokenOpt = Annotated[
    str | None,
    typer.Option("--admin-token", help="Admin token [env TOLLWAY_ADMIN_TOKEN]", show_default=False),
]
AsOpt = Annotated[
    str | None, typer.Option("--as", help="Who to record in the history [default: $USER]", show_default=False)
]
OutputOpt = Annotated[OutputFormat, typer.Option("--output", "-o", help="Output format")]


def connect(control_plane: str | None, admin_token: str | None) -> AdminClient:
    config = load_client_config(control_plane, admin_token)
    return AdminClient(config.control_plane, config.admin_token)


def who(as_: str | None) -> str:
    if as_:
        return as_
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers): history still needs a name
        return "unknown"
