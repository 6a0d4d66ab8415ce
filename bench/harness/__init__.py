"""What the benchmark commands share: starting pinned processes (``stack``, ``fleet``), driving load (``wrk``),
profiling (``cpu_profile``) and the overhead report's tables (``overhead_report``). The commands themselves are
the modules of ``bench`` (``python -m bench.overhead``, ``bench.overload``, ``bench.outage``, ...)."""
