"""Scale: 1,000 tenants and 100,000 keys. Re-applying the whole policy (the GitOps case) must stay fast.

Runs on the embedded store: etcd's default limits (128 operations, 1.5 MiB per transaction) refuse the first
100,000-key apply by design; production etcd needs the flags in docs/admin-api.md. Bounds are generous because
CI machines are shared; the point is to catch the seconds-per-apply regressions of re-validating everything.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from controlplane.engine import Document
from controlplane.repository import Repository
from controlplane.store.base import open_store
from tests.core.policy_docs import api_key, model, provider, route, tenant

TENANTS, KEYS = 1_000, 100_000


def policy(changed: int | None = None) -> list[Document]:
    base = [provider("p"), model("m", "p"), route("r", "m")]
    base += [tenant(f"t{i}", "eu", projects=("web",)) for i in range(TENANTS)]
    keys = [api_key(f"k{i}", f"t{i % TENANTS}", hashlib.sha256(str(i).encode()).hexdigest()) for i in range(KEYS)]
    if changed is not None:
        keys[changed] = api_key(f"k{changed}", "t0", hashlib.sha256(b"rotated").hexdigest())
    return [Document(f"keys.yaml#{i}", d) for i, d in enumerate(base + keys)]


async def test_reapplying_a_large_policy_is_fast(tmp_path: Path) -> None:
    store = await open_store(f"embedded://{tmp_path / 'store'}")
    try:
        repo = Repository(store)
        first = await repo.apply(policy(), who="seed")
        assert (first.revision, first.applied, len(first.changes)) == (1, True, TENANTS + KEYS + 3)

        started = time.perf_counter()
        same = await repo.apply(policy(), who="ci")
        noop_seconds = time.perf_counter() - started
        assert (same.revision, same.applied) == (1, False)

        started = time.perf_counter()
        one = await repo.apply(policy(changed=42), who="ci")
        change_seconds = time.perf_counter() - started
        assert (one.revision, [(c.op, c.name) for c in one.changes if c.op != "unchanged"]) == (2, [("update", "k42")])

        # A control plane that just started (cold cache) loads everything once.
        started = time.perf_counter()
        state = await Repository(store).state()
        load_seconds = time.perf_counter() - started
        assert len(state.resources) == TENANTS + KEYS + 3
    finally:
        await store.close()
    assert noop_seconds < 4.0, noop_seconds
    assert change_seconds < 8.0, change_seconds
    assert load_seconds < 30.0, load_seconds
