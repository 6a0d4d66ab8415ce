"""A py-spy profile of a running process, and where its CPU went.

``record`` attaches py-spy (``pip install py-spy``; it needs ptrace, so root or ``CAP_SYS_PTRACE``) to a pid for
a number of seconds, pinned to a CPU of the caller's choosing, writing a speedscope file (open it at
https://www.speedscope.app). It samples only the thread holding the GIL (``--gil``): on one core a Python
process's CPU is, nearly all of it, time holding the GIL, and py-spy's "idle" test (is the thread runnable?)
counts threads that wait for the CPU or the GIL as busy. ``summarize`` reads that file: the functions that held
the GIL most, by self time (the innermost Python frame; time in C code is charged to the Python function that
called it) and inclusive (anywhere on the stack, leaving out the frames every sample of a thread passes
through), as shares of the samples; and, from /proc (``thread_cpu`` before and after), the CPU time of each
thread, which also counts what a thread spends with the GIL released (system calls).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from bench.harness.stack import stat_cpu_seconds

_THREAD_NAME = re.compile(r'Thread (\d+) "(.*)"')


def py_spy() -> str | None:
    here = Path(sys.executable).with_name("py-spy")
    return str(here) if here.exists() else shutil.which("py-spy")


def record(pid: int, seconds: int, output: Path, cpu: str = "1", rate: int = 200) -> subprocess.Popen[bytes]:
    """Start py-spy on ``pid``; the caller waits for the returned process (it ends after ``seconds``)."""
    exe = py_spy()
    if exe is None:
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    output.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        ["taskset", "-c", cpu, exe, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", str(rate),
         "--gil", "--format", "speedscope", "--output", str(output)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """``{tid: (comm, utime + stime seconds)}`` of the live threads of ``pid``."""
    out: dict[int, tuple[str, float]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        out[int(task.name)] = (stat[stat.index("(") + 1 : stat.rindex(")")], stat_cpu_seconds(stat))
    return out


def _file(frame: dict[str, Any]) -> str:
    """The frame's file, relative to site-packages, the standard library or the repository."""
    file = str(frame.get("file") or "?")
    stdlib = f"/lib/python{sys.version_info.major}.{sys.version_info.minor}/"
    for marker in ("site-packages/", stdlib, str(Path(__file__).resolve().parents[2]) + "/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def _where(frame: dict[str, Any]) -> str:
    return f"{frame['name']} ({_file(frame)})"


def _package(frame: dict[str, Any]) -> str:
    """``dataplane/record``, ``aiohttp``, ``asyncio``...; ``<string>`` is code generated at run time (dataclasses)."""
    parts = _file(frame).split("/")
    return "/".join(parts[:2]) if parts[0] in ("dataplane", "controlplane", "tollway") and len(parts) > 2 else parts[0]


def summarize(path: Path, before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
              top: int = 10) -> dict[str, Any]:
    """``{"samples", "threads": [[name, cpu_s]], "self": [[function, share]], "inclusive", "packages"}``, best
    first; ``packages`` is self time by package (the innermost frame's)."""
    doc = json.loads(path.read_text())
    names = [_where(f) for f in doc["shared"]["frames"]]
    packages = [_package(f) for f in doc["shared"]["frames"]]
    thread_names: dict[int, str] = {}
    own: Counter[str] = Counter()
    own_package: Counter[str] = Counter()
    anywhere: dict[str, Counter[str]] = defaultdict(Counter)  # per thread
    per_thread: Counter[str] = Counter()
    for profile in doc["profiles"]:
        thread = profile["name"]
        if m := _THREAD_NAME.match(thread):
            thread_names[int(m.group(1))] = m.group(2)
        for stack in profile["samples"]:
            if stack:
                per_thread[thread] += 1
                own[names[stack[-1]]] += 1  # speedscope stacks run from the root to the innermost frame
                own_package[packages[stack[-1]]] += 1
                anywhere[thread].update({names[i] for i in stack})
    total = sum(per_thread.values())
    inclusive: Counter[str] = Counter()
    for thread, frames in anywhere.items():
        inclusive.update({name: n for name, n in frames.items() if n < per_thread[thread]})  # not plumbing
    threads = sorted(((thread_names.get(tid, comm), round(cpu - before.get(tid, (comm, 0.0))[1], 2))
                      for tid, (comm, cpu) in after.items()), key=lambda t: -t[1])

    def shares(counter: Counter[str], n: int) -> list[list[Any]]:
        return [[name, round(k / total, 4)] for name, k in counter.most_common(n)] if total else []
    return {"samples": total, "threads": [list(t) for t in threads if t[1] > 0],
            "self": shares(own, top), "inclusive": shares(inclusive, 2 * top), "packages": shares(own_package, top)}


def render(summary: dict[str, Any]) -> str:
    """Markdown tables of a ``summarize`` result that also holds the profile's ``path`` and ``seconds``."""
    cpu = sum(s for _, s in summary["threads"])
    lines = [f"Profile of the data plane at saturation (JSON, then streaming): `{summary['path']}`, "
             f"{summary['samples']} samples of the thread holding the GIL.", "",
             f"| thread | CPU s over {summary['seconds']} s (/proc) | share |", "|---|---:|---:|"]
    shown, rest = summary["threads"][:6], summary["threads"][6:]
    if rest:
        shown.append([f"{len(rest)} other threads", sum(s for _, s in rest)])
    lines += [f"| {name} | {s:.2f} | {s / cpu:.0%} |" for name, s in shown]
    lines += ["", "| top functions, self time (GIL held) | share |", "|---|---:|"]
    lines += [f"| `{name}` | {share:.1%} |" for name, share in summary["self"]]
    lines += ["", "| self time by package (GIL held) | share |", "|---|---:|"]
    lines += [f"| `{name}` | {share:.1%} |" for name, share in summary.get("packages", [])]
    lines += ["", "| top functions, inclusive (GIL held) | share |", "|---|---:|"]
    lines += [f"| `{name}` | {share:.1%} |" for name, share in summary["inclusive"]]
    return "\n".join(lines) + "\n"
