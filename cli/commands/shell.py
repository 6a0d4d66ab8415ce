"""What the shell around ``gatectl`` gets: ``--version``, ``completion bash|zsh|fish``, and help laid out wide.

Completion is typer's (click's machinery): the script ``completion`` prints calls ``gatectl`` back with
``_GATECTL_COMPLETE`` set, and the app answers with the words that fit, so it follows every command and option
as they are, never a list kept by hand. Install it with ``source <(gatectl completion bash)`` (zsh likewise;
fish: ``gatectl completion fish | source``).
"""

from __future__ import annotations

import enum
import importlib.metadata
import shutil
import sys
from typing import Annotated, Any

import typer

# typer's own machinery behind its --show-completion option (no public function prints the script on its own).
from typer._completion_classes import completion_init
from typer._completion_shared import get_completion_script

PROG_NAME = "gatectl"
COMPLETE_VAR = "_GATECTL_COMPLETE"
HELP_WIDTH = 120  # help's width when stdout is not a terminal (on one: the terminal's width)


class Shell(enum.StrEnum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


def package_version() -> str:
    try:
        return importlib.metadata.version("tollway")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def show_version(value: bool) -> None:
    if value:
        print(f"{PROG_NAME} {package_version()}")
        raise typer.Exit()


VersionOpt = Annotated[
    bool, typer.Option("--version", help="Print gatectl's version and exit", is_eager=True, callback=show_version)
]


def root(version: VersionOpt = False) -> None:
    """Tollway's command-line client: policy, keys, history, and running the servers."""


def completion(shell: Annotated[Shell, typer.Argument(help="bash, zsh or fish")]) -> None:
    """Print the shell completion script for bash, zsh or fish.

    bash and zsh: source <(gatectl completion bash); fish: gatectl completion fish | source.
    """
    print(get_completion_script(prog_name=PROG_NAME, complete_var=COMPLETE_VAR, shell=shell.value))


def help_settings() -> dict[str, Any]:
    """click's layout of help: as wide as the terminal, or ``HELP_WIDTH`` when stdout is not one (piped into a
    pager, a file or CI logs, click would assume 80 columns). Read once, when the app is built."""
    width = shutil.get_terminal_size((HELP_WIDTH, 24)).columns if sys.stdout.isatty() else HELP_WIDTH
    return {"max_content_width": width, "terminal_width": width}


def enable_completion() -> None:
    """Register typer's completion classes with click (what ``add_completion`` would do, without its options)."""
    completion_init()
