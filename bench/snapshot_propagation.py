"""How long a large policy takes to compile and reach a data plane (target: under 2 s).

Writes 1,000 tenants and 100,000 keys (plus a provider, model and route) into an embedded store, starts a
control plane and a data plane on loopback, and measures:

- initial publish: list + decode + compile on the control plane (a one-off at control-plane start);
- first delivery: a new data plane's connect → snapshot received, validated, installed, persisted;
- change propagation: one key written to the store → the data plane runs the snapshot containing it
  (watch, debounce, recompile, send, install, persist). This is the number the 2 s target is about.

    python -m bench.snapshot_propagation [--tenants 1000] [--keys 100000] [--changes 5]

Each change is measured separately and the median and worst are reported: on a shared machine single runs vary.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from controlplane.policy.resources import dump_resource, parse_resource
from controlplane.server import ControlPlane
from controlplane.settings import ControlPlaneSettings
from controlplane.store.base import Store
from controlplane.store.embedded import EmbeddedStore
from controlplane.store.layout import resource_key
from dataplane.serve import DataPlane
from dataplane.settings import DataPlaneSettings


@dataclass(frozen=True)
class Timings:
    initial_publish_s: float
    first_delivery_s: float
    change_propagation_s: list[float]
    snapshot_bytes: int
    keys_served: int  # keys in the data plane's runtime after the first delivery


def _doc(kind: str, name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "tollway.dev/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def _key(i: int, tenants: int) -> dict[str, Any]:
    digest = hashlib.sha256(f"bench-key-{i}".encode()).hexdigest()
    return _doc("ApiKey", f"key-{i}", tenant=f"tenant-{i % tenants}", hash=f"sha256:{digest}", hint="tw_...0000")


def large_policy(tenants: int, keys: int) -> list[dict[str, Any]]:
    docs = [
        _doc("Provider", "mock-eu", type="mock", region="eu"),
        _doc("Model", "small", provider="mock-eu", upstreamModel="small", contextWindow=8192, maxOutputTokens=1024,
             pricing={"inputPerMillion": "0.15", "outputPerMillion": "0.6"}),
        _doc("Route", "chat", models=["small"]),
    ]
    docs += [_doc("Tenant", f"tenant-{t}", regions=["eu"]) for t in range(tenants)]
    docs += [_key(i, tenants) for i in range(keys)]
    return docs


def _encoded(doc: dict[str, Any]) -> tuple[str, bytes]:
    r = parse_resource(doc)
    return resource_key(r.kind, r.name), orjson.dumps(dump_resource(r))


async def _until(check: Callable[[], bool], what: str, within: float = 120.0) -> float:
    start = time.perf_counter()
    while not check():
        if time.perf_counter() - start > within:
            raise TimeoutError(f"{what}: not within {within} s")
        await asyncio.sleep(0.002)
    return time.perf_counter() - start


async def measure(tenants: int, keys: int, changes: int, directory: Path) -> Timings:
    store: Store = await EmbeddedStore.open(None)
    puts = [_encoded(d) for d in large_policy(tenants, keys)]
    for i in range(0, len(puts), 10_000):
        await store.txn([], puts=puts[i:i + 10_000])
    cp = ControlPlane(ControlPlaneSettings(state_dir=str(directory / "cp"), admin_port=0, grpc_port=0), store=store)
    started = time.perf_counter()
    await cp.start()
    dp: DataPlane | None = None
    try:
        await _until(lambda: cp.publisher.is_ready, "initial publish")
        initial = time.perf_counter() - started
        snapshot = cp.publisher.snapshot("eu")
        size = snapshot.ByteSize() if snapshot is not None else 0
        dp = DataPlane(DataPlaneSettings(port=0, region="eu", node_id="bench", control_plane=cp.grpc_target,
                                         control_plane_token=cp.dataplane_token, state_dir=str(directory / "dp")))
        started = time.perf_counter()
        await dp.start()
        target = cp.publisher.version("eu")
        running = dp
        await _until(lambda: running.holder.version == target, "first delivery")
        first = time.perf_counter() - started
        served = len(running.holder.runtime.keys) if running.holder.runtime is not None else 0
        propagation = []
        for n in range(changes):
            digest = hashlib.sha256(f"bench-change-{n}".encode()).digest()
            doc = _doc("ApiKey", f"change-{n}", tenant="tenant-0", hash=f"sha256:{digest.hex()}", hint="tw_...0000")
            started = time.perf_counter()
            await store.txn([], puts=[_encoded(doc)])
            propagation.append(await _until(
                lambda d=digest: running.holder.runtime is not None and d in running.holder.runtime.keys,  # type: ignore[misc]
                "change propagation"))
        return Timings(initial, first, propagation, size, served)
    finally:
        if dp is not None:
            await dp.stop()
        await cp.stop()
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--changes", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as d:
        t = asyncio.run(measure(args.tenants, args.keys, args.changes, Path(d)))
    print(f"snapshot: {args.tenants} tenants, {args.keys} keys, {t.snapshot_bytes / 1e6:.1f} MB")
    print(f"initial publish (list + decode + compile): {t.initial_publish_s:.2f} s")
    print(f"first delivery to a new data plane:        {t.first_delivery_s:.2f} s")
    worst = max(t.change_propagation_s)
    each = ", ".join(f"{s:.2f} s" for s in t.change_propagation_s)
    print(f"change propagation (store write -> data plane runs it): {each}")
    print(f"  median {statistics.median(t.change_propagation_s):.2f} s, worst {worst:.2f} s  "
          f"(target < 2 s: {'ok' if worst < 2 else 'MISSED'})")


if __name__ == "__main__":
    main()
