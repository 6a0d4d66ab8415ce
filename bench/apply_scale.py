"""How long `gatectl apply` of a large policy takes: 1,000 tenants and 100,000 keys on the embedded store.

First apply, a re-apply with no change (the GitOps case: CI applies the whole folder on every merge), a
one-key change, and a cold load by a control plane that just started.

    python -m bench.apply_scale
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import time
from typing import Any

from controlplane.policy.engine import Document
from controlplane.policy.repository import Repository
from controlplane.store.open import open_store

TENANTS, KEYS = 1_000, 100_000


def doc(kind: str, name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "tollway.dev/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def policy(changed: int | None = None) -> list[Document]:
    docs = [
        doc("Provider", "p", type="mock", region="eu"),
        doc("Model", "m", provider="p", upstreamModel="m", contextWindow=8192, maxOutputTokens=1024,
            pricing={"inputPerMillion": "1", "outputPerMillion": "2"}),
        doc("Route", "r", models=["m"]),
    ]
    docs += [doc("Tenant", f"t{i}", regions=["eu"], projects=[{"name": "web"}]) for i in range(TENANTS)]
    for i in range(KEYS):
        seed = b"rotated" if i == changed else str(i).encode()
        docs.append(doc("ApiKey", f"k{i}", tenant=f"t{i % TENANTS}", hash="sha256:" + hashlib.sha256(seed).hexdigest()))
    return [Document(f"keys.yaml#{i}", d) for i, d in enumerate(docs)]


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tollway-apply-") as tmp:
        store = await open_store(f"embedded://{tmp}/store")
        try:
            repo = Repository(store)
            timings: list[tuple[str, float]] = []
            for label, action in (
                ("first apply", lambda: repo.apply(policy(), who="bench")),
                ("re-apply, no change", lambda: repo.apply(policy(), who="bench")),
                ("re-apply, one key changed", lambda: repo.apply(policy(changed=42), who="bench")),
                ("cold load (fresh control plane)", lambda: Repository(store).state()),
            ):
                started = time.perf_counter()
                await action()
                timings.append((label, time.perf_counter() - started))
        finally:
            await store.close()
    print(f"{TENANTS:,} tenants, {KEYS:,} keys, embedded store")
    for label, seconds in timings:
        print(f"  {label:<34} {seconds:6.2f} s")


if __name__ == "__main__":
    asyncio.run(main())
