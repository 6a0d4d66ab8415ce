"""Running gatectl the way a user does: ``python -m cli.main`` as a subprocess, servers as real processes.

Output of long-running commands goes to files, read while the process runs, so a chatty server can never block
on a full pipe.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "test-admin-token"  # the control plane of the ``env`` fixture (tests/cli/conftest.py)
START_TIMEOUT_SECONDS = 30.0


def base_env(tmp: Path) -> dict[str, str]:
    """The user's environment minus anything that would point gatectl elsewhere; config isolated in ``tmp``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOLLWAY_", "OPENAI_"))}
    env["XDG_CONFIG_HOME"] = str(tmp / "xdg")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def gatectl(*args: str, env: dict[str, str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run to completion; stdin is empty and not a terminal (as in a script or CI job)."""
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def wait_for(self, pattern: str, stream: str = "stderr", timeout: float = START_TIMEOUT_SECONDS) -> re.Match[str]:
        path = self.stdout if stream == "stdout" else self.stderr
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, path.read_text(errors="replace"))
            if found:
                return found
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} not seen (exit {self.process.poll()}):\n"
                             f"{self.stdout.read_text(errors='replace')}\n{self.stderr.read_text(errors='replace')}")

    def interrupt(self, timeout: float = 15.0) -> int:
        """Ctrl-C, and the exit status once it has stopped."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"did not stop within {timeout}s of SIGINT") from None


def start_gatectl(tmp: Path, name: str, *args: str, env: dict[str, str]) -> Running:
    stdout, stderr = tmp / f"{name}.out", tmp / f"{name}.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env, stdout=out,
                                   stderr=err)
    return Running(process, stdout, stderr)
