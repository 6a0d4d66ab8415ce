"""Nothing sensitive leaks: a real run through the official SDK, then every log line, stored event, metric,
error body, persisted file and store value it produced is searched for the prompts, responses, client keys and
upstream credential it used. Content appears only where a tenant's logging mode allows it (``full``: the
request log, and only that tenant's)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import aiohttp
import openai
import pytest

from controlplane.policy.engine import Document
from controlplane.policy.repository import Repository
from controlplane.store.embedded import EmbeddedStore
from tests.core.policy_docs import model, provider, route, tenant
from tests.discovery.conftest import ADMIN_TOKEN, DP_TOKEN, DataPlaneFactory, eventually, running_control_plane
from tests.fakes.openai_upstream import fake_openai
from tests.observability.leakscan import assert_no_leaks, scan

UPSTREAM_KEY = "sk-upstream-credential-do-not-leak-91827364"
PROMPT_QUIET = "The launch code is PURPLE-ELEPHANT-7731, card 4111 1111 1111 1111"
PROMPT_HASHED = "My IBAN is DE89370400440532013000 and my SSN is 123-45-6789"
PROMPT_FULL = "Internal only: review the build script for TEAL-OTTER-5150"
REPLY = "Confidential answer: ORANGE-GIRAFFE-4421 stays between us"


async def text_of(url: str, headers: dict[str, str] | None = None) -> str:
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers or {}) as resp:
        return await resp.text()


async def test_no_secret_reaches_logs_events_metrics_errors_or_files(
    tmp_path: Path, data_plane_factory: DataPlaneFactory, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("LEAK_TEST_UPSTREAM_KEY", UPSTREAM_KEY)
    store = await EmbeddedStore.open(str(tmp_path / "store"))
    errors: list[str] = []
    async with fake_openai(UPSTREAM_KEY) as upstream:
        upstream.reply = REPLY
        repo = Repository(store)
        docs = [
            provider("up-eu", "eu", base_url=upstream.base_url, credential={"env": "LEAK_TEST_UPSTREAM_KEY"}),
            model("small", "up-eu"), route("chat", "small"),
            tenant("quiet", "eu"), tenant("hashed", "eu", logging={"content": "hashed"}),
            tenant("full", "eu", logging={"content": "full"}),
        ]
        await repo.apply([Document(f"test#{i}", d) for i, d in enumerate(docs)], who="test")
        try:
            async with running_control_plane(store, tmp_path / "cp") as cp:
                keys = {t: (await repo.create_key(f"{t}-key", t, who="test")).secret
                        for t in ("quiet", "hashed", "full")}
                request_log = tmp_path / "dp" / "requests.log"
                dp = await data_plane_factory(cp.grpc_target, state_dir=tmp_path / "dp",
                                              request_log=str(request_log))
                await eventually(lambda: dp.is_ready and len(dp.holder.runtime.keys) == 3,  # type: ignore[union-attr]
                                 what="snapshot with the keys")

                for name, prompt in (("quiet", PROMPT_QUIET), ("hashed", PROMPT_HASHED), ("full", PROMPT_FULL)):
                    client = openai.AsyncOpenAI(base_url=f"{dp.url}/v1", api_key=keys[name], max_retries=0)
                    reply = await client.chat.completions.create(
                        model="chat", messages=[{"role": "user", "content": prompt}], user=f"{name}-user")
                    assert reply.choices[0].message.content == REPLY
                    stream = await client.chat.completions.create(
                        model="chat", messages=[{"role": "user", "content": prompt}], stream=True)
                    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == REPLY
                    for model_name, extra in (("nope", {}), ("chat", {"api_base": "http://elsewhere"})):
                        with pytest.raises(openai.APIStatusError) as caught:
                            await client.chat.completions.create(
                                model=model_name, messages=[{"role": "user", "content": prompt}], extra_body=extra)
                        errors.append(caught.value.response.text)
                wrong = openai.AsyncOpenAI(base_url=f"{dp.url}/v1", api_key=keys["quiet"][:-4] + "AAAA",
                                           max_retries=0)
                with pytest.raises(openai.AuthenticationError) as denied:
                    await wrong.chat.completions.create(model="chat",
                                                        messages=[{"role": "user", "content": PROMPT_QUIET}])
                errors.append(denied.value.response.text)

                deadline = asyncio.get_running_loop().time() + 10
                while len(await cp.usage_db.fetch("SELECT request_id FROM usage_events")) < 6:
                    assert asyncio.get_running_loop().time() < deadline, "usage never arrived"
                    await asyncio.sleep(0.1)
                events = await cp.usage_db.fetch("SELECT * FROM usage_events")
                metrics = await text_of(f"{dp.url}/metrics") + await text_of(f"{cp.admin_url}/metrics")
                stored = await store.list("/")
                store_text = "\n".join(f"{kv.key}={kv.value!r}" for kv in stored.items)
                if dp.request_log is not None:
                    await dp.request_log.stop()  # flush it before reading it
        finally:
            await store.close()

    log_text = request_log.read_text()
    sources: list[object] = [
        ("process logs", caplog.text), ("usage events", repr(events)), ("metrics", metrics),
        ("error bodies", "\n".join(errors)), ("store", store_text), tmp_path / "dp" / "usage",
        tmp_path / "cp",
    ]
    never = {"upstream credential": UPSTREAM_KEY, "admin token": ADMIN_TOKEN, "data-plane token": DP_TOKEN,
             **{f"{t} client key": k for t, k in keys.items()}}
    assert_no_leaks(never | {"quiet prompt": PROMPT_QUIET, "hashed prompt": PROMPT_HASHED,
                             "full prompt": PROMPT_FULL, "reply": REPLY},
                    sources)  # type: ignore[arg-type]
    assert_no_leaks(never | {"quiet prompt": PROMPT_QUIET, "hashed prompt": PROMPT_HASHED},
                    [("request log", log_text)])
    # The log kept the full tenant's content (its mode allows it) and hashes of the hashed tenant's.
    assert scan({"full prompt": PROMPT_FULL}, [("request log", log_text)])
    assert scan({"reply": REPLY}, [("request log", log_text)])
    served = [e for e in map(json.loads, log_text.splitlines()) if e.get("status") == 200]
    modes = {(e["tenant"], e["content_mode"]) for e in served}
    assert modes == {("quiet", "none"), ("hashed", "hashed"), ("full", "full")}
    for entry in served:
        if entry["tenant"] == "hashed":
            assert len(entry["prompt"][0]["hmac"]) == 64
        elif entry["tenant"] == "quiet":
            assert entry.get("prompt") is None and entry.get("response") is None
