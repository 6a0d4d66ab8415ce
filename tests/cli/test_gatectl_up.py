"""``gatectl up`` end to end: the whole gateway in one process, used with the official openai SDK, then Ctrl-C."""

from __future__ import annotations

import csv
import io
import json
import stat
import time
from pathlib import Path
from typing import Any

import openai

from tests.cli.gatectl_process import Running, base_env, gatectl, start_gatectl

FIRST_LINES = r"OPENAI_BASE_URL=(\S+)\nOPENAI_API_KEY=(\S+)\n"


def start_up(tmp_path: Path, name: str, env: dict[str, str]) -> Running:
    return start_gatectl(tmp_path, name, "up", "--port", "0", "--admin-port", "0", "--grpc-port", "0",
                         "--state-dir", str(tmp_path / "state"), env=env)


def test_up_serves_the_openai_sdk_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    up = start_up(tmp_path, "up", env)
    try:
        found = up.wait_for(FIRST_LINES, stream="stdout")
        assert up.stdout.read_text().startswith("OPENAI_BASE_URL=")  # the very first lines
        base_url, api_key = found.group(1), found.group(2)
        client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=30)

        assert {"chat-fast", "chat-smart"} <= {m.id for m in client.models.list()}
        reply = client.chat.completions.create(model="chat-fast", messages=[{"role": "user", "content": "hello"}])
        assert reply.choices[0].message.content
        assert reply.usage is not None and reply.usage.completion_tokens > 0
        stream = client.chat.completions.create(
            model="chat-fast", messages=[{"role": "user", "content": "hello"}], stream=True)
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        assert text

        export = up.wait_for(r"export TOLLWAY_CONTROL_PLANE=(\S+) TOLLWAY_ADMIN_TOKEN=(\S+)\n", stream="stdout")
        admin = env | {"TOLLWAY_CONTROL_PLANE": export.group(1), "TOLLWAY_ADMIN_TOKEN": export.group(2)}
        planes = gatectl("dataplanes", env=admin)
        assert planes.returncode == 0, planes.stderr
        row = planes.stdout.splitlines()[1].split()
        assert (row[1], row[3], row[-1]) == ("eu", "ACK", "yes")
        keys = gatectl("get", "keys", env=admin)
        assert api_key not in keys.stdout and f"tw_...{api_key[-4:]}" in keys.stdout
        providers = gatectl("get", "providers", env=admin)
        assert {line.split()[1] for line in providers.stdout.splitlines()[1:]} == {"mock"}

        # Both requests reached the (mock) upstream: two usage records, shipped to the control plane.
        deadline = time.monotonic() + 15
        while True:
            report = gatectl("usage", "--by", "tenant,route", "-o", "csv", env=admin)
            assert report.returncode == 0, report.stderr
            rows = list(csv.DictReader(io.StringIO(report.stdout)))
            if rows or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert [(r["tenant"], r["route"], r["requests"]) for r in rows] == [("search", "chat-fast", "2")]
        assert int(rows[0]["output_tokens"]) >= reply.usage.completion_tokens
        assert float(rows[0]["cost_usd"]) > 0

        # The rest of the API surface works offline out of the box, as the quick start shows.
        answer = client.responses.create(model="chat-fast", input="hello", max_output_tokens=64)
        assert answer.output_text and answer.usage is not None and answer.usage.output_tokens > 0
        tools: list[Any] = [{"type": "function", "name": "get_weather", "description": "The weather in a city",
                             "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                            "required": ["city"]}}]
        called = client.responses.create(model="chat-fast", input="What's the weather in Paris? Call the tool.",
                                         tools=tools)
        calls = [item for item in called.output if item.type == "function_call"]
        assert calls and json.loads(calls[0].arguments)["city"] == "Paris"
        vectors = client.embeddings.create(model="text-embedding-3-small", input=["hello", "world"])
        assert [len(d.embedding) for d in vectors.data] == [1536, 1536]
    finally:
        code = up.interrupt()
    assert code == 0, up.stderr.read_text()
    assert "Traceback" not in up.stderr.read_text()

    key_file = tmp_path / "state" / "demo-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() == api_key

    again = start_up(tmp_path, "up-again", env)
    try:
        assert again.wait_for(FIRST_LINES, stream="stdout").group(2) == api_key  # reused on restart
    finally:
        assert again.interrupt() == 0


def test_up_with_two_workers_serves_from_both_data_planes(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    up = start_gatectl(tmp_path, "up", "up", "--port", "0", "--admin-port", "0", "--grpc-port", "0",
                       "--state-dir", str(tmp_path / "state"), "--workers", "2", env=env)
    try:
        found = up.wait_for(FIRST_LINES, stream="stdout")
        for i in range(6):
            with openai.OpenAI(base_url=found.group(1), api_key=found.group(2), max_retries=2, timeout=30) as c:
                assert c.chat.completions.create(model="chat-fast", messages=[{"role": "user", "content": f"{i}"}])
        export = up.wait_for(r"export TOLLWAY_CONTROL_PLANE=(\S+) TOLLWAY_ADMIN_TOKEN=(\S+)\n", stream="stdout")
        admin = env | {"TOLLWAY_CONTROL_PLANE": export.group(1), "TOLLWAY_ADMIN_TOKEN": export.group(2)}
        planes = json.loads(gatectl("dataplanes", "-o", "json", env=admin).stdout)["items"]
        assert len(planes) == 2 and all(p["status"] == "ACK" and p["connected"] for p in planes)
    finally:
        assert up.interrupt() == 0, up.stderr.read_text()
