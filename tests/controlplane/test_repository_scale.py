"""Scale: 1,000 tenants and 100,000 keys. Re-applying the whole policy (the GitOps case) writes nothing, and a
one-key change writes one key. How long it takes is measured by ``bench/apply_scale.py``, not here.

Runs on the embedded store: etcd's default limits (128 operations, 1.5 MiB per transaction) refuse the first
100,000-key apply by design; production etcd needs the flags in docs/admin-api.md.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from controlplane.policy.engine import Document
from controlplane.policy.repository import Repository
from controlplane.store.open import open_store
from tests.core.policy_docs import api_key, model, provider, route, tenant

TENANTS, KEYS = 1_000, 100_000


def policy(changed: int | None = None) -> list[Document]:
    base = [provider("p"), model("m", "p"), route("r", "m")]
    base += [tenant(f"t{i}", "eu", projects=("web",)) for i in range(TENANTS)]
    keys = [api_key(f"k{i}", f"t{i % TENANTS}", hashlib.sha256(str(i).encode()).hexdigest()) for i in range(KEYS)]
    if changed is not None:
        keys[changed] = api_key(f"k{changed}", "t0", hashlib.sha256(b"rotated").hexdigest())
    return [Document(f"keys.yaml#{i}", d) for i, d in enumerate(base + keys)]


async def test_reapplying_a_large_policy_changes_only_what_changed(tmp_path: Path) -> None:
    store = await open_store(f"embedded://{tmp_path / 'store'}")
    try:
        repo = Repository(store)
        first = await repo.apply(policy(), who="seed")
        assert (first.revision, first.applied, len(first.changes)) == (1, True, TENANTS + KEYS + 3)

        same = await repo.apply(policy(), who="ci")
        assert (same.revision, same.applied) == (1, False)

        one = await repo.apply(policy(changed=42), who="ci")
        assert (one.revision, [(c.op, c.name) for c in one.changes if c.op != "unchanged"]) == (2, [("update", "k42")])

        # A control plane that just started (cold cache) loads everything once.
        state = await Repository(store).state()
        assert len(state.resources) == TENANTS + KEYS + 3
    finally:
        await store.close()
