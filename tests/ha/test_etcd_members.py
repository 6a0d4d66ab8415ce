"""The replicas on a three-member etcd cluster: SIGKILL the member a replica's store talks to, and the store
(one channel over every member, ``--store etcd://m1,m2,m3``) goes on through another; the election keeps its
holder, and a fenced duty write still succeeds."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.ha.election import EtcdElection
from controlplane.store.base import StoreError
from controlplane.store.etcd import EtcdStore
from tests.conftest import free_port


class Cluster:
    def __init__(self, directory: Path, size: int = 3) -> None:
        executable = shutil.which("etcd")
        if executable is None:
            pytest.fail("etcd is not installed; install Debian's etcd-server package (apt-get install etcd-server)")
        self.clients = [free_port() for _ in range(size)]
        peers = [free_port() for _ in range(size)]
        initial = ",".join(f"m{i}=http://127.0.0.1:{p}" for i, p in enumerate(peers))
        self.processes: list[subprocess.Popen[bytes]] = []
        for i in range(size):
            client, peer = f"http://127.0.0.1:{self.clients[i]}", f"http://127.0.0.1:{peers[i]}"
            with (directory / f"etcd-m{i}.log").open("ab") as log:
                self.processes.append(subprocess.Popen([
                    executable, f"--name=m{i}", f"--data-dir={directory / f'm{i}'}",
                    f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
                    f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
                    f"--initial-cluster={initial}", "--initial-cluster-state=new",
                    "--heartbeat-interval=50", "--election-timeout=500"], stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 30
        while not all(self._healthy(p) for p in self.clients):
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail("the etcd cluster did not become healthy within 30 s")
            time.sleep(0.1)
        self.url = "etcd://" + ",".join(f"127.0.0.1:{p}" for p in self.clients)

    @staticmethod
    def _healthy(port: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=0.5) as resp:
                return b'"true"' in resp.read()
        except OSError:
            return False

    def kill(self, i: int) -> None:
        self.processes[i].kill()
        self.processes[i].wait(10)

    def stop(self) -> None:
        for p in self.processes:
            if p.poll() is None:
                p.kill()
                p.wait(10)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop()


async def test_the_store_and_the_duty_holder_outlive_the_etcd_member_they_talk_to(cluster: Cluster) -> None:
    store = await EtcdStore.connect(cluster.url, request_timeout=2)
    election = EtcdElection(store, "cp1", ttl_s=3)
    task = asyncio.create_task(election.run())
    try:
        await asyncio.wait_for(election.ready.wait(), 10)
        assert election.is_held()
        assert (await store.txn(election.fence(), [("/tollway/test/duty", b"before")])).succeeded
        cluster.kill(0)  # the first listed: the one the channel is connected to
        deadline, written = time.monotonic() + 10, False
        while not written and time.monotonic() < deadline:
            try:
                written = (await store.txn(election.fence(), [("/tollway/test/duty", b"after")])).succeeded
            except StoreError:
                await asyncio.sleep(0.2)  # the channel is moving to another member (or etcd elects a leader)
        assert written, "no fenced write went through the surviving members within 10 s"
        await asyncio.sleep(3)  # a lease's worth of refreshes through the other members
        assert election.is_held()
        kv = await store.get("/tollway/test/duty")
        assert kv is not None and kv.value == b"after"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()
