"""Nothing sensitive leaks: a real run through the official SDK, then every log line, stored event, metric,
error body, persisted file and store value it produced is searched for the prompts, responses, client keys and
upstream credential it used. Content appears only where a tenant's logging mode allows it (``full``: the
request log, and only that tenant's).

The cloud providers' credentials get the same search after a run against the fakes of Bedrock, the Gemini API and
Vertex AI that succeeds, then fails in every way that puts upstream text in front of the gateway (throttling,
5xx, validation errors, refused signatures and keys, expired session and access tokens, a token endpoint that
refuses the service account, errors mid-stream): the AWS secret key and session token, the Google API keys, the
Vertex access tokens, the JWTs that bought them and the service accounts' private keys. Their places include what
the admin API and ``gatectl get`` answer about the policy, the snapshots and the providers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from controlplane.policy.engine import Document
from controlplane.policy.repository import Repository
from controlplane.server import ControlPlane
from controlplane.store.embedded import EmbeddedStore
from dataplane.snapshot.disk_cache import SnapshotCache
from dataplane.upstream.adapters.google_auth import AccessTokens
from tests.cli.gatectl_process import ROOT, base_env
from tests.core.policy_docs import model, provider, route, tenant
from tests.discovery.conftest import ADMIN_TOKEN, DP_TOKEN, DataPlaneFactory, eventually, running_control_plane
from tests.fakes.bedrock_upstream import FakeBedrock, fake_bedrock
from tests.fakes.google_upstream import FakeGemini, FakeVertex, fake_gemini, fake_vertex, new_service_account_key
from tests.fakes.openai_upstream import fake_openai
from tests.observability.leakscan import MIN_SECRET_LEN, assert_no_leaks, scan

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


# --- the cloud providers' credentials ------------------------------------------------------------------------------

AWS_ACCESS_KEY = "AKIALEAKTESTKEYID001"
AWS_SECRET_KEY = "leakTestAwsSecret/0123456789abcdefghijklmno"
AWS_SESSION_TOKEN = "IQoJb3JpZ2luLeakTestSessionToken0123456789+/=="
AWS_REGION = "eu-central-1"
GEMINI_KEY = "AIza-leak-test-gemini-key-0123456789abcdef"
GEMINI_WRONG_KEY = "AIza-leak-test-wrong-key-fedcba9876543210"
GCP_PROJECT = "tollway-leak-test"
GCP_LOCATION = "europe-west4"
PROMPT = "Say hello"
AWS_CLEAN_ENV = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SECURITY_TOKEN", "AWS_BEARER_TOKEN_BEDROCK", "AWS_ROLE_ARN",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CREDENTIAL_EXPIRATION")
GOOGLE_CLEAN_ENV = ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT",
                    "GOOGLE_CLOUD_LOCATION", "GOOGLE_CLOUD_QUOTA_PROJECT", "GCE_METADATA_HOST", "GCE_METADATA_IP")
ADMIN_PATHS = [f"/admin/v1/resources?kind={k}" for k in ("Tenant", "ApiKey", "Provider", "Model", "Route")] + [
    "/admin/v1/snapshots", "/admin/v1/providers", "/admin/v1/dataplanes", "/admin/v1/history", "/admin/v1/audit",
    "/admin/v1/compliance/report"]


def cloud_policy(bedrock: FakeBedrock, gemini: FakeGemini, vertex: FakeVertex) -> list[dict[str, Any]]:
    vertex_spec = {"gcpProject": GCP_PROJECT, "gcpLocation": GCP_LOCATION}
    return [
        provider("bedrock-eu", "eu", type_="bedrock", base_url=bedrock.endpoint, awsRegion=AWS_REGION),
        provider("gemini-eu", "eu", type_="gemini", base_url=gemini.base_url, credential={"env": "LEAK_TEST_GEMINI"}),
        provider("gemini-wrong", "eu", type_="gemini", base_url=gemini.base_url,
                 credential={"env": "LEAK_TEST_GEMINI_WRONG"}),
        provider("vertex-eu", "eu", type_="vertex", base_url=vertex.base_url, credential={"env": "LEAK_TEST_VERTEX"},
                 **vertex_spec),
        provider("vertex-untrusted", "eu", type_="vertex", base_url=vertex.base_url,
                 credential={"env": "LEAK_TEST_VERTEX_UNTRUSTED"}, **vertex_spec),
        model("nova", "bedrock-eu", upstreamModel="amazon.nova-lite-v1:0"),
        model("claude", "bedrock-eu", upstreamModel="eu.anthropic.claude-3-5-haiku-20241022-v1:0"),
        model("flash", "gemini-eu", upstreamModel="gemini-2.5-flash"),
        model("flash-wrong", "gemini-wrong", upstreamModel="gemini-2.5-flash"),
        model("vflash", "vertex-eu", upstreamModel="gemini-2.5-flash"),
        model("vflash-untrusted", "vertex-untrusted", upstreamModel="gemini-2.5-flash"),
        *(route(name, name, failover={"attempts": 1}) for name in
          ("nova", "claude", "flash", "flash-wrong", "vflash", "vflash-untrusted")),
        tenant("acme", "eu"),
    ]


def key_lines(pem: str) -> list[str]:
    """The base64 lines of a PEM private key: any one of them in a log would be part of the key."""
    return [line for line in pem.splitlines() if "-----" not in line and len(line) >= 2 * MIN_SECRET_LEN]


async def admin_texts(cp: ControlPlane) -> list[tuple[str, str]]:
    """What the admin API answers about policy, snapshots, providers, data planes, history, audit, compliance."""
    texts = []
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as session:
        for path in ADMIN_PATHS:
            async with session.get(f"{cp.admin_url}{path}") as resp:
                assert resp.status == 200, path
                texts.append((f"admin API {path}", await resp.text()))
    return texts


async def gatectl_get(cp: ControlPlane, tmp_path: Path) -> list[tuple[str, str]]:
    """``gatectl get <kind> -o yaml`` (a subprocess, as an operator runs it) for every kind."""
    env = base_env(tmp_path) | {"TOLLWAY_CONTROL_PLANE": cp.admin_url, "TOLLWAY_ADMIN_TOKEN": ADMIN_TOKEN}

    async def run(kind: str) -> tuple[str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli.main", "get", kind, "-o", "yaml", cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err.decode()
        return f"gatectl get {kind}", out.decode() + err.decode()

    return list(await asyncio.gather(*(run(k) for k in ("providers", "models", "routes", "tenants", "keys"))))


async def shipped_usage(cp: ControlPlane, at_least: int) -> list[tuple[Any, ...]]:
    """The usage events in DuckDB once at least ``at_least`` arrived and no more came for a few polls."""
    loop = asyncio.get_running_loop()
    deadline, seen, quiet = loop.time() + 10, -1, 0
    while quiet < 3:
        assert loop.time() < deadline, "usage never arrived"
        await asyncio.sleep(0.1)
        count = len(await cp.usage_db.fetch("SELECT request_id FROM usage_events"))
        quiet = quiet + 1 if count == seen and count >= at_least else 0
        seen = count
    return await cp.usage_db.fetch("SELECT * FROM usage_events")


Call = Callable[[], Awaitable[object]]


async def refused(call: Call, errors: list[str]) -> int:
    """Run a request that must fail; keep what the client was shown (body, message, a stream's error event)."""
    try:
        answer = await call()
        if isinstance(answer, openai.AsyncStream | anthropic.AsyncStream):
            async for _ in answer:
                pass
    except (openai.APIStatusError, anthropic.APIStatusError) as exc:
        errors.extend([exc.response.text, exc.message, repr(exc.body)])
        return exc.status_code
    except (openai.APIError, anthropic.APIError) as exc:  # an error event in a stream already under way
        errors.extend([exc.message, repr(exc.body)])
        return 200
    pytest.fail("the request was expected to fail")


async def test_no_cloud_credential_reaches_logs_events_metrics_errors_snapshots_or_files(
    tmp_path: Path, data_plane_factory: DataPlaneFactory, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # botocore's DEBUG records included, and google-auth's: it logs only once the "google" logger is configured, as
    # an operator who turns its logs on does.
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="google")
    # The data plane finds its credentials as in production, and nothing past loopback: no profile, no file, no
    # instance metadata, no ADC, no gcloud configuration.
    for name in (*AWS_CLEAN_ENV, *GOOGLE_CLEAN_ENV):
        monkeypatch.delenv(name, raising=False)
    for name, value in (("AWS_ACCESS_KEY_ID", AWS_ACCESS_KEY), ("AWS_SECRET_ACCESS_KEY", AWS_SECRET_KEY),
                        ("AWS_SESSION_TOKEN", AWS_SESSION_TOKEN), ("AWS_EC2_METADATA_DISABLED", "true"),
                        ("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config")),
                        ("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials")),
                        ("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud")), ("NO_GCE_CHECK", "True"),
                        ("LEAK_TEST_GEMINI", GEMINI_KEY), ("LEAK_TEST_GEMINI_WRONG", GEMINI_WRONG_KEY)):
        monkeypatch.setenv(name, value)
    secrets_dir = tmp_path / "secrets"  # key files live outside every directory searched below
    secrets_dir.mkdir()
    store = await EmbeddedStore.open(str(tmp_path / "store"))
    errors: list[str] = []
    async with fake_bedrock(access_key=AWS_ACCESS_KEY, secret_key=AWS_SECRET_KEY, session_token=AWS_SESSION_TOKEN,
                            region=AWS_REGION) as bedrock, fake_gemini(api_key=GEMINI_KEY) as gemini, \
            fake_vertex(project=GCP_PROJECT, location=GCP_LOCATION) as vertex:
        assert vertex.credentials_file is not None and vertex.service_account is not None
        untrusted = new_service_account_key(GCP_PROJECT, "untrusted")  # a key the token endpoint does not know
        monkeypatch.setenv("LEAK_TEST_VERTEX", str(vertex.credentials_file))
        monkeypatch.setenv("LEAK_TEST_VERTEX_UNTRUSTED",
                           str(untrusted.write(secrets_dir / "untrusted.json", vertex.token_uri)))
        repo = Repository(store)
        await repo.apply([Document(f"cloud#{i}", d) for i, d in enumerate(cloud_policy(bedrock, gemini, vertex))],
                         who="test")
        try:
            async with running_control_plane(store, tmp_path / "cp") as cp:
                key = (await repo.create_key("acme-key", "acme", who="test")).secret
                request_log = tmp_path / "dp" / "requests.log"
                dp = await data_plane_factory(cp.grpc_target, state_dir=tmp_path / "dp",
                                              request_log=str(request_log))
                await eventually(lambda: dp.is_ready and len(dp.holder.runtime.keys) == 1,  # type: ignore[union-attr]
                                 what="snapshot with the key")
                chat = openai.AsyncOpenAI(base_url=f"{dp.url}/v1", api_key=key, max_retries=0, timeout=20)
                messages = anthropic.AsyncAnthropic(base_url=dp.url, api_key=key, max_retries=0, timeout=20)

                def ask(model_name: str, stream: bool = False) -> Call:
                    return lambda: chat.chat.completions.create(
                        model=model_name, messages=[{"role": "user", "content": PROMPT}], stream=stream)

                def ask_anthropic(model_name: str) -> Call:
                    return lambda: messages.messages.create(
                        model=model_name, max_tokens=64, messages=[{"role": "user", "content": PROMPT}])

                # Served: every provider, non-streamed and streamed, through the OpenAI and Anthropic dialects.
                for name in ("nova", "claude", "flash", "vflash"):
                    reply = await chat.chat.completions.create(model=name,
                                                               messages=[{"role": "user", "content": PROMPT}])
                    assert reply.choices[0].message.content
                    stream = await chat.chat.completions.create(
                        model=name, messages=[{"role": "user", "content": PROMPT}], stream=True)
                    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
                    assert (await ask_anthropic(name)()).content  # type: ignore[attr-defined]
                # Vertex refuses the access tokens held (401): the data plane fetches a new one and sends again.
                vertex.expire_tokens()
                assert (await ask("vflash")()).choices[0].message.content  # type: ignore[attr-defined]
                assert len(vertex.tokens) >= 2

                # Failures whose upstream text reaches the gateway, each through the chat and streamed paths.
                fakes: list[tuple[FakeBedrock | FakeGemini | FakeVertex, str]] = [
                    (bedrock, "nova"), (gemini, "flash"), (vertex, "vflash")]
                for fake, name in fakes:
                    for status, expected in ((429, 429), (500, 502), (503, 502)):
                        fake.fail_status, fake.fail_times = status, 100
                        assert await refused(ask(name), errors) == expected
                        assert await refused(ask(name, stream=True), errors) == expected
                    fake.fail_status, fake.fail_times = 0, 0
                bedrock.fail_status, bedrock.fail_times = 400, 100  # a ValidationException: its message is shown
                assert await refused(ask("nova"), errors) == 400
                bedrock.fail_status, bedrock.fail_times = 0, 0
                bedrock.event_delay_s, bedrock.error_after_events = 0.01, 3  # an exception frame mid-stream
                for exception in ("modelStreamErrorException", "validationException", "throttlingException"):
                    bedrock.stream_error = exception
                    assert await refused(ask("nova", stream=True), errors) == 200
                bedrock.error_after_events = -1
                # Credentials refused: a signature the fake computes with another secret (its answer quotes the
                # canonical request, session token included), an expired session token, a wrong Gemini key, a
                # service account the token endpoint does not know; also through the Anthropic dialect.
                bedrock.secret_key = "the-secret-the-fake-expects-instead/0123"
                for call in (ask("nova"), ask("nova", stream=True), ask("claude"), ask_anthropic("claude")):
                    assert await refused(call, errors) == 502
                bedrock.secret_key, bedrock.token_expired = AWS_SECRET_KEY, True
                assert await refused(ask("nova"), errors) == 502
                bedrock.token_expired = False
                for name in ("flash-wrong", "vflash-untrusted"):
                    for call in (ask(name), ask(name, stream=True), ask_anthropic(name)):
                        assert await refused(call, errors) == 502
                assert any("InvalidSignatureException" in e for e in errors), "the signature was not refused"
                assert any("'gemini-wrong'" in e for e in errors), "the Gemini key was not refused"
                assert any("could not get a Google access token" in e for e in errors), "the JWT was not refused"
                await chat.close()
                await messages.close()

                events = await shipped_usage(cp, at_least=4 * 3 + 1)  # the served requests, and the failed ones
                metrics = await text_of(f"{dp.url}/metrics") + await text_of(f"{cp.admin_url}/metrics")
                admin = await admin_texts(cp)
                listings = await gatectl_get(cp, tmp_path)
                stored = await store.list("/")
                store_text = "\n".join(f"{kv.key}={kv.value!r}" for kv in stored.items)
                if dp.request_log is not None:
                    await dp.request_log.stop()  # flush it before reading it
        finally:
            await store.close()
        jwts = [r.body["assertion"] for r in vertex.token_requests if r.body.get("assertion")]
        never = {
            "AWS secret access key": AWS_SECRET_KEY, "AWS session token": AWS_SESSION_TOKEN,
            "Gemini API key": GEMINI_KEY, "wrong Gemini API key": GEMINI_WRONG_KEY,
            **{f"Vertex access token #{i}": t for i, t in enumerate(vertex.tokens)},
            **{f"service-account JWT #{i}": j for i, j in enumerate(jwts)},
            **{f"service-account private key, line {i}": line
               for i, line in enumerate(key_lines(vertex.service_account.private_key_pem))},
            **{f"untrusted private key, line {i}": line for i, line in enumerate(key_lines(untrusted.private_key_pem))},
            "client key": key, "admin token": ADMIN_TOKEN, "data-plane token": DP_TOKEN,
        }
    assert len(vertex.tokens) >= 2 and len(jwts) >= 3  # the search has something to find
    # Every attribute of every record, not only its message: a JSON log formatter prints the ``extra`` fields too
    # (google-auth puts the HTTP requests and answers it logs there).
    records = [record for phase in ("setup", "call") for record in caplog.get_records(phase)]
    logged = "\n".join(f"{record.getMessage()} {vars(record)!r}" for record in records)
    sources: list[object] = [
        ("process logs", caplog.text), ("log records", logged), ("usage events", repr(events)),
        ("metrics", metrics), ("error bodies", "\n".join(errors)), ("store", store_text), *admin, *listings,
        request_log, tmp_path / "dp", tmp_path / "cp",  # the persisted snapshot, the usage spool, the state
    ]
    assert_no_leaks(never, sources)  # type: ignore[arg-type]
    # Nor does the AWS access key id, which names the account, reach a client.
    assert_no_leaks({"AWS access key id": AWS_ACCESS_KEY}, [("error bodies", "\n".join(errors))])
    # The run produced what was searched: requests in the request log, the providers in the listings and in the
    # persisted snapshot, which name the variables that hold the credentials, never their values.
    logged_requests = [json.loads(line) for line in request_log.read_text().splitlines()]
    assert {e["deployment"] for e in logged_requests} >= {"nova", "claude", "flash", "vflash"}
    assert {e["status"] for e in logged_requests} >= {200, 429, 502}
    persisted = SnapshotCache(str(tmp_path / "dp")).path.read_bytes()
    assert b"bedrock-eu" in persisted and b"LEAK_TEST_GEMINI" in persisted and b"LEAK_TEST_VERTEX" in persisted
    assert "LEAK_TEST_VERTEX" in dict(admin)["admin API /admin/v1/resources?kind=Provider"]
    assert "LEAK_TEST_GEMINI" in dict(listings)["gatectl get providers"]
    names = {record.name for record in records}
    assert any(n.startswith("botocore.") for n in names) and any(n.startswith("google.auth.transport.")
                                                                 for n in names), "the libraries' DEBUG records"


def test_google_auth_request_records_keep_no_credential(caplog: pytest.LogCaptureFixture) -> None:
    """What google-auth's transports log of a token request (other grants than the service account's included)
    once the data plane's Google access tokens exist: the record stays, its credentials do not."""
    from google.auth import _helpers

    AccessTokens()
    caplog.set_level(logging.DEBUG, logger="google")
    secrets = {"JWT assertion": "eyJhbGciOiJSUzI1NiJ9.leak-test-assertion.signature",
               "federated subject token": "leak-test-oidc-subject-token-0123456789",
               "bearer token": "ya29.leak-test-source-token-0123456789"}
    body = (f"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={secrets['JWT assertion']}"
            f"&subject_token={secrets['federated subject token']}").encode()
    for transport in ("requests", "urllib3"):
        _helpers.request_log(logging.getLogger(f"google.auth.transport.{transport}"), "POST",
                             "https://oauth2.googleapis.com/token", body,
                             {"Content-Type": "application/x-www-form-urlencoded",
                              "Authorization": f"Bearer {secrets['bearer token']}"})
    records = {id(r): r for r in caplog.records if r.name.startswith("google.auth.transport.")}
    logged = [vars(r) for r in records.values()]
    assert len(logged) == 2 and all(r["httpRequest"]["body"]["grant_type"].endswith("jwt-bearer") for r in logged)
    assert_no_leaks(secrets, [("log records", repr(logged))])
