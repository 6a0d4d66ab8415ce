"""Exit codes and the CLI's errors; the one place where an error becomes a message on stderr and an exit code.

Exit codes (like kubectl/httpie, ``diff`` reserves 1 for "there are changes")::

    0  OK               the command did what was asked
    1  CHANGES          ``gatectl diff`` or ``gatectl plan`` found differences (not an error)
    2  USAGE            bad arguments, unreadable files, invalid YAML or policy caught before anything is sent,
                        a confirmation needed but stdin is not a terminal (``rollback`` without ``--yes``)
    3  REFUSED          the control plane refused the request (4xx: invalid policy, conflict, a name that exists,
                        a delete of something still referred to, not found, auth)
    4  UNAVAILABLE      the control plane cannot be reached, or it failed (5xx, malformed answer), or a server
                        that gatectl runs could not start (port in use, store unreachable)
    5  CHECK_FAILED     a ``--fail-on`` condition held (``gatectl plan --replay 7d --fail-on refusals>0``)
    130 INTERRUPTED     Ctrl-C before the command finished (servers stopped by Ctrl-C exit 0: that is how
                        they are meant to stop)

Errors::

    CliError                    base; carries its exit code and renders itself as lines for stderr
    ├── UsageError              2: a bad flag value, a missing file, a bad config file
    │   └── RealProvidersRefused    2: apply would swap `gatectl up`'s mock providers for real ones (cli.stand_ins)
    ├── InvalidDocuments        2: local YAML/validation problems (every one, each naming file, object, field)
    ├── Refused                 3: a 4xx answer; ``code`` is the API's error type
    │   └── PolicyRejected      3: 422 ``invalid_policy`` with problems, mapped back to files
    ├── Unavailable             4: connection refused/timeout, 5xx, an answer that is not the API's JSON
    └── StartupFailed           4: ``serve``/``up`` could not start a server

Commands raise these; ``exit_on_error`` (used once, around every command) prints and exits. Anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import typer


class ExitCode(enum.IntEnum):
    OK = 0
    CHANGES = 1
    USAGE = 2
    REFUSED = 3
    UNAVAILABLE = 4
    CHECK_FAILED = 5
    INTERRUPTED = 130


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one document: where (file, document number, object) and what (field, message)."""

    file: str
    document: int | None  # 1-based position in the file; None when unknown
    kind: str
    name: str
    field: str
    message: str

    def __str__(self) -> str:
        obj = f"{self.kind or '?'}/{self.name or '?'}" if self.kind or self.name else ""
        if self.file and self.document is not None:
            where = f"{self.file}: document {self.document}" + (f" ({obj})" if obj else "")
        else:
            where = ": ".join(part for part in (self.file, obj) if part) or "policy"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class CliError(Exception):
    exit_code: ExitCode = ExitCode.USAGE

    def lines(self) -> list[str]:
        return [f"error: {self}"]


class UsageError(CliError):
    exit_code = ExitCode.USAGE


class InvalidDocuments(CliError):
    exit_code = ExitCode.USAGE

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__(f"{len(problems)} problem(s) in the policy documents; nothing was sent")
        self.problems = tuple(problems)

    def lines(self) -> list[str]:
        return [f"error: {p}" for p in self.problems] + [f"error: {self}"]


class Refused(CliError):
    exit_code = ExitCode.REFUSED

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class PolicyRejected(Refused):
    def __init__(self, message: str, problems: Sequence[Problem]) -> None:
        super().__init__(422, "invalid_policy", message)
        self.problems = tuple(problems)

    def lines(self) -> list[str]:
        if not self.problems:
            return [f"error: {self}; nothing was changed"]
        summary = f"the control plane refused the policy ({len(self.problems)} problem(s)); nothing was changed"
        return [f"error: {p}" for p in self.problems] + [f"error: {summary}"]


class Unavailable(CliError):
    exit_code = ExitCode.UNAVAILABLE


class StartupFailed(CliError):
    exit_code = ExitCode.UNAVAILABLE


@contextmanager
def exit_on_error() -> Iterator[None]:
    """Turn a ``CliError`` into its lines on stderr and its exit code; the only place that does."""
    try:
        yield
    except CliError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        raise typer.Exit(int(exc.exit_code)) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
