"""Progress of long operations on a terminal, and the one-line summary at their end.

``Progress`` redraws one status line on stderr (``\\r``, cleared when done) only when stderr is a terminal, at
most every ``min_interval_s``; piped or redirected, it writes nothing, so scripts and logs see only the
results and the summary. ``waiting`` keeps the line's clock moving (from a thread) while the caller blocks on
the control plane's answer. ``summary`` always goes to stderr: stdout keeps what a script parses.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TextIO


class Progress:
    """One status line; use as a context manager so the line is cleared however it ends. Its methods take a lock,
    for ``waiting``'s thread."""

    def __init__(self, stream: TextIO | None = None, min_interval_s: float = 0.1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._live = self._stream.isatty()
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._started = clock()
        self._last = -min_interval_s
        self._width = 0
        self._lock = threading.Lock()

    @property
    def elapsed_s(self) -> float:
        return self._clock() - self._started

    def update(self, text: str, force: bool = False) -> None:
        if not self._live:
            return
        with self._lock:
            now = self._clock()
            if not force and now - self._last < self._min_interval_s:
                return
            self._last = now
            line = f"{text} ({self.elapsed_s:.1f}s)"
            self._stream.write("\r" + line.ljust(self._width))
            self._stream.flush()
            self._width = len(line)

    def clear(self) -> None:
        if not self._live:
            return
        with self._lock:
            if self._width:
                self._stream.write("\r" + " " * self._width + "\r")
                self._stream.flush()
                self._width = 0

    @contextlib.contextmanager
    def waiting(self, text: str, every_s: float = 0.25) -> Iterator[None]:
        """Show ``text`` with the time spent so far, redrawn every ``every_s`` until the block ends."""
        self.update(text, force=True)
        if not self._live:
            yield
            return
        stop = threading.Event()

        def tick() -> None:
            while not stop.wait(every_s):
                self.update(text, force=True)

        ticker = threading.Thread(target=tick, name="progress", daemon=True)
        ticker.start()
        try:
            yield
        finally:
            stop.set()
            ticker.join()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.clear()


def summary(text: str, stream: TextIO | None = None) -> None:
    print(text, file=stream if stream is not None else sys.stderr)


def count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
