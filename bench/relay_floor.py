"""The added latency of a relay that does no work: the floor this machine puts under any proxy's figure.

``bench/overhead.py`` measures added latency as "through a proxy minus directly". Through a proxy on its own CPU
a request crosses CPUs four times (client -> proxy -> upstream -> proxy -> client), where directly the client and
the upstream share CPU 1 and never wake another CPU. On a virtual machine a CPU that idles halts, and waking it
costs the hypervisor's wake-up: with the upstream answering after 10-30 ms, the proxy's CPU has halted by the
time the answer comes. This measures that floor with the same topology and a relay in place of the proxy: three
processes on blocking TCP sockets over loopback (the client and a delayed echo upstream on CPU 1, the relay on
CPU 0), one connection, the same request size both ways, the relay copying bytes with one ``recv`` and one
``sendall`` each way and nothing else. What it adds is the machine's, not any proxy's work.

    python -m bench.relay_floor [--requests 300] [--delay-ms 10-30]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import time
from dataclasses import dataclass

from bench.fast_upstream import DEFAULT_DELAY_S, Delays, parse_delay_ms
from bench.overload import p99

REQUEST = b"x" * 256


@dataclass(frozen=True)
class Floor:
    direct_p50_ms: float
    relayed_p50_ms: float
    direct_p99_ms: float
    relayed_p99_ms: float

    @property
    def added_p50_ms(self) -> float:
        return self.relayed_p50_ms - self.direct_p50_ms

    @property
    def added_p99_ms(self) -> float:
        return self.relayed_p99_ms - self.direct_p99_ms


def _listener() -> socket.socket:
    return socket.create_server(("127.0.0.1", 0))


def _nodelay(sock: socket.socket) -> socket.socket:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _upstream(listener: socket.socket, delay_s: tuple[float, float]) -> None:
    """Answers each request after a delay uniform over ``delay_s``, in golden-ratio order from each connection's
    start (``fast_upstream.Delays``), so the direct and the relayed run see the same delays."""
    os.sched_setaffinity(0, {1})
    while True:
        conn, _ = listener.accept()
        _nodelay(conn)
        delays = Delays(*delay_s)
        while data := conn.recv(len(REQUEST)):
            time.sleep(delays.next())
            conn.sendall(data)
        conn.close()


def _relay(listener: socket.socket, upstream: tuple[str, int]) -> None:
    os.sched_setaffinity(0, {0})
    while True:
        client, _ = listener.accept()
        server = _nodelay(socket.create_connection(upstream))
        _nodelay(client)
        while data := client.recv(len(REQUEST)):
            server.sendall(data)
            client.sendall(server.recv(len(REQUEST)))
        client.close()
        server.close()


def _round_trips(address: tuple[str, int], requests: int) -> list[float]:
    with _nodelay(socket.create_connection(address)) as sock:
        out = []
        for _ in range(requests):
            start = time.perf_counter()
            sock.sendall(REQUEST)
            got = 0
            while got < len(REQUEST):
                got += len(sock.recv(len(REQUEST)))
            out.append((time.perf_counter() - start) * 1000)
        return out


def measure(requests: int = 300, delay_s: tuple[float, float] = DEFAULT_DELAY_S) -> Floor:
    """Round trips directly and through the relay, alternating in halves so a change in the machine hits both."""
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("the relay floor needs two CPUs")
    context = multiprocessing.get_context("fork")
    up, relay = _listener(), _listener()
    children = [context.Process(target=_upstream, args=(up, delay_s), daemon=True),
                context.Process(target=_relay, args=(relay, up.getsockname()[:2]), daemon=True)]
    for child in children:
        child.start()
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {1})
    try:
        direct: list[float] = []
        relayed: list[float] = []
        for _ in range(2):
            direct += _round_trips(up.getsockname()[:2], requests // 2)
            relayed += _round_trips(relay.getsockname()[:2], requests // 2)
    finally:
        os.sched_setaffinity(0, affinity)
        for child in children:
            child.kill()
            child.join()
        up.close()
        relay.close()
    return Floor(round(statistics.median(direct), 3), round(statistics.median(relayed), 3),
                 round(p99(direct), 3), round(p99(relayed), 3))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--delay-ms", dest="delay_s", type=parse_delay_ms, default=DEFAULT_DELAY_S,
                        help="the upstream's uniform delay range, LOW-HIGH in ms (default 10-30)")
    args = parser.parse_args(argv)
    floor = measure(args.requests, args.delay_s)
    print(f"directly p50 {floor.direct_p50_ms:.3f} ms, p99 {floor.direct_p99_ms:.3f} ms; through a relay that does "
          f"no work p50 {floor.relayed_p50_ms:.3f} ms, p99 {floor.relayed_p99_ms:.3f} ms; added p50 "
          f"{floor.added_p50_ms:.3f} ms, p99 {floor.added_p99_ms:.3f} ms")


if __name__ == "__main__":
    main()
