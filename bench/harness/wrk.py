"""wrk as a load generator: N keep-alive connections, each sending one request after the other.

wrk is closed-loop (a connection sends its next request when the previous answer is complete) and records each
request's latency, from the first byte written to the last byte of the answer read (for a chunked stream: its
last chunk), in microseconds; a Lua ``done`` hook prints the summary as one JSON line, so no text is scraped.
It runs pinned to a CPU with one thread. Needs ``wrk`` (Debian: ``apt-get install wrk``).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\n{"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, '
    .. '"socket_errors": %d, "status_errors": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, e.connect + e.read + e.write + e.timeout, e.status))
end
"""


@dataclass(frozen=True)
class Load:
    """What one wrk run measured; latencies in milliseconds."""

    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int  # socket errors, timeouts and non-2xx answers

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def write_script(path: Path, body: dict[str, Any], headers: dict[str, str], pause_ms: float = 0) -> Path:
    """A wrk script POSTing ``body`` (JSON) with ``headers``, and the JSON summary hook; ``pause_ms``: each
    connection waits this long after an answer before its next request (a client with think time: N connections
    then offer about N / pause requests a second, whatever the answers' latency)."""
    lines = ['wrk.method = "POST"', f"wrk.body = [[{json.dumps(body)}]]",
             'wrk.headers["Content-Type"] = "application/json"']
    lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items()]
    if pause_ms:
        lines.append(f"delay = function() return {pause_ms:g} end")
    path.write_text("\n".join(lines) + "\n" + _DONE)
    return path


def run(url: str, script: Path, connections: int, duration_s: float, cpu: str = "1",
        timeout_s: float = 5.0) -> Load:
    argv = ["taskset", "-c", cpu, "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s",
            f"--timeout={timeout_s:g}s", "-s", str(script), url]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    summary = json.loads(out.strip().splitlines()[-1])
    return Load(requests=summary["requests"], duration_s=summary["duration_us"] / 1e6,
                p50_ms=summary["p50_us"] / 1000, p90_ms=summary["p90_us"] / 1000, p99_ms=summary["p99_us"] / 1000,
                max_ms=summary["max_us"] / 1000, errors=summary["socket_errors"] + summary["status_errors"])
