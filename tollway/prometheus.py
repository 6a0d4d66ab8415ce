"""A small Prometheus registry: counters, gauges and fixed-bucket histograms, rendered in the text exposition
format (version 0.0.4). Shared by the data plane and the control plane.

Why not ``prometheus_client``: it is not a dependency, and it takes a lock on every increment (it is built for
threads). Here every metric is owned by one event loop, so recording is a plain attribute update on a label
*child* resolved once (``labels(...)`` at setup, or memoized by the caller): no lock, no string formatting, no
dict lookup by label text on the hot path. Formatting happens only when ``render`` is called by a scrape.

Label values must be policy-defined names or closed sets (status codes, a fixed ``kind``); never prompts, keys or
other user-provided text. Values are escaped on render, so a stray character cannot break the exposition.

Not thread-safe: use from one event loop (or one thread) only.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence

LATENCY_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if isinstance(value, int) or value.is_integer():
        return str(int(value))
    return repr(value)


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: float = 0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


class GaugeChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: float = 0

    def set(self, value: float) -> None:
        self.value = value

    def inc(self, amount: float = 1) -> None:
        self.value += amount


class HistogramChild:
    """``counts[i]`` is the number of observations in bucket i alone (made cumulative on render)."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum: float = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1


class _Metric:
    type_ = ""

    def __init__(self, name: str, help_: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], object] = {}

    def _child(self, values: tuple[str, ...], make: Callable[[], object]) -> object:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = make()
        return child

    def clear(self) -> None:
        """Forget every child (for gauges refilled at each scrape, e.g. one series per connected data plane)."""
        self._children.clear()

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {_escape(self.help)}", f"# TYPE {self.name} {self.type_}"]

    def samples(self) -> Iterable[str]:
        for values, child in sorted(self._children.items()):
            yield f"{self.name}{_labels(self.labelnames, values)} {_number(child.value)}"  # type: ignore[attr-defined]


class Counter(_Metric):
    type_ = "counter"

    def labels(self, *values: str) -> CounterChild:
        child = self._child(values, CounterChild)
        assert isinstance(child, CounterChild)
        return child


class Gauge(_Metric):
    type_ = "gauge"

    def labels(self, *values: str) -> GaugeChild:
        child = self._child(values, GaugeChild)
        assert isinstance(child, GaugeChild)
        return child


class Histogram(_Metric):
    type_ = "histogram"

    def __init__(self, name: str, help_: str, labelnames: Sequence[str] = (),
                 buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        super().__init__(name, help_, labelnames)
        self.buckets = tuple(sorted(buckets))

    def labels(self, *values: str) -> HistogramChild:
        child = self._child(values, lambda: HistogramChild(self.buckets))
        assert isinstance(child, HistogramChild)
        return child

    def samples(self) -> Iterable[str]:
        for values, child in sorted(self._children.items()):
            assert isinstance(child, HistogramChild)
            running = 0
            for bound, n in zip((*self.buckets, math.inf), child.counts, strict=True):
                running += n
                le = f'le="{_number(bound)}"'
                yield f"{self.name}_bucket{_labels(self.labelnames, values, le)} {running}"
            yield f"{self.name}_sum{_labels(self.labelnames, values)} {_number(child.sum)}"
            yield f"{self.name}_count{_labels(self.labelnames, values)} {child.count}"


class Registry:
    """Metrics in registration order; ``render`` is the body of ``GET /metrics``."""

    CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        self._metrics: list[_Metric] = []
        self._names: set[str] = set()

    def _add(self, metric: _Metric) -> None:
        if metric.name in self._names:
            raise ValueError(f"metric {metric.name} is registered twice")
        self._names.add(metric.name)
        self._metrics.append(metric)

    def counter(self, name: str, help_: str, labelnames: Sequence[str] = ()) -> Counter:
        metric = Counter(name, help_, labelnames)
        self._add(metric)
        return metric

    def gauge(self, name: str, help_: str, labelnames: Sequence[str] = ()) -> Gauge:
        metric = Gauge(name, help_, labelnames)
        self._add(metric)
        return metric

    def histogram(self, name: str, help_: str, labelnames: Sequence[str] = (),
                  buckets: Sequence[float] = LATENCY_BUCKETS) -> Histogram:
        metric = Histogram(name, help_, labelnames, buckets)
        self._add(metric)
        return metric

    def render(self) -> bytes:
        lines: list[str] = []
        for metric in self._metrics:
            lines += metric.header()
            lines += metric.samples()
        return ("\n".join(lines) + "\n").encode()


def merge_expositions(parts: Sequence[tuple[str, str]], label: str = "worker") -> str:
    """One exposition for a process group, from ``(member, exposition)`` pairs of identically built registries:
    counter and histogram samples with the same name and labels are summed; gauge samples keep one line per
    member with ``label="<member>"`` added (a gauge is a state, not a sum). HELP and TYPE lines come once."""
    kinds: dict[str, str] = {}
    headers: dict[str, list[str]] = {}
    order: list[str] = []
    sums: dict[str, dict[str, float]] = {}
    gauges: dict[str, list[str]] = {}
    for member, text in parts:
        for line in text.splitlines():
            if line.startswith("#"):
                fields = line.split(" ", 3)
                if len(fields) >= 4 and fields[1] in ("HELP", "TYPE"):
                    name = fields[2]
                    if name not in headers:
                        headers[name] = []
                        order.append(name)
                    if line not in headers[name]:
                        headers[name].append(line)
                    if fields[1] == "TYPE":
                        kinds[name] = fields[3]
                continue
            if not line.strip():
                continue
            series, _, value = line.rpartition(" ")
            name = series.split("{", 1)[0]
            family = next((f for f in (name, name.rsplit("_", 1)[0]) if f in kinds), name)
            if kinds.get(family) == "gauge":
                if "{" in series:
                    head, rest = series.split("{", 1)
                    tagged = f'{head}{{{rest[:-1]},{label}="{_escape(member)}"}}' if rest != "}" \
                        else f'{head}{{{label}="{_escape(member)}"}}'
                else:
                    tagged = f'{series}{{{label}="{_escape(member)}"}}'
                gauges.setdefault(family, []).append(f"{tagged} {value}")
            else:
                totals = sums.setdefault(family, {})
                totals[series] = totals.get(series, 0.0) + float(value)
    lines: list[str] = []
    for name in order:
        lines += headers[name]
        lines += [f"{series} {_number(v)}" for series, v in sums.get(name, {}).items()]
        lines += gauges.get(name, [])
    return "\n".join(lines) + "\n"
