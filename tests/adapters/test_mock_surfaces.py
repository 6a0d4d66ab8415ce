"""The mock provider's other surfaces (``dataplane.upstream.adapters.mock.surfaces``): legacy completions,
embeddings, moderations and token counts, each checked against the official openai SDK's types."""

from __future__ import annotations

import array
import base64
import math
from typing import Any

import openai
import pytest
from openai.lib._parsing._embeddings import parse_embedding_response
from openai.types import Completion, CreateEmbeddingResponse, Moderation, ModerationCreateResponse

from dataplane.translate.anthropic_to_hub import openai_request
from dataplane.upstream.adapters.mock.surfaces import embeddings, moderation, text_completion, text_completion_chunks
from dataplane.upstream.adapters.mock.text import count_message_tokens, count_tokens, prompt_tokens, text_tokens
from tests.adapters.mock_schemas import WEATHER_PARAMS, chat

pytestmark = pytest.mark.pure

# -- legacy completions ------------------------------------------------------------------------------------------


TEXTS: list[tuple[str, dict[str, Any], int | None, int]] = [
    ("string", {"prompt": "Say this is a test"}, None, 1),
    ("strings and n", {"prompt": ["first prompt", "second prompt"], "n": 2}, None, 4),
    ("token ids", {"prompt": [1, 2, 3]}, 50, 1),
    ("lists of ids", {"prompt": [[1, 2], [3, 4, 5]]}, 50, 2),
    ("echo and logprobs", {"prompt": "Once upon a time", "echo": True, "logprobs": 2}, 100, 1),
    ("stop", {"prompt": "alpha beta", "stop": ["beta"]}, 100, 1),
]


@pytest.mark.parametrize(("payload", "limit", "count"), [(p, m, c) for _, p, m, c in TEXTS],
                         ids=[n for n, _, _, _ in TEXTS])
def test_text_completions(payload: dict[str, Any], limit: int | None, count: int) -> None:
    raw = text_completion(payload, "mock-text", "cmpl-1", 1, limit)
    answer = Completion.model_validate(raw)
    assert answer.object == "text_completion" and [c.index for c in answer.choices] == list(range(count))
    echo = payload["prompt"] if payload.get("echo") else ""
    generated = [c.text[len(echo):] for c in answer.choices]
    assert all(c.text.startswith(echo) for c in answer.choices)
    assert answer.usage is not None
    assert answer.usage.completion_tokens == sum(text_tokens(g) for g in generated)
    if limit is None:  # OpenAI's default of 16 tokens
        assert all(c.finish_reason == "length" or count_tokens(c.text) <= 16 for c in answer.choices)
    for choice in answer.choices:
        if payload.get("logprobs") is not None:
            assert choice.logprobs is not None and choice.logprobs.tokens is not None
            assert "".join(choice.logprobs.tokens) == choice.text[len(echo):]
            assert choice.logprobs.text_offset is not None and choice.logprobs.text_offset[0] == len(echo)
            assert all(len(t) == 2 for t in choice.logprobs.top_logprobs or [])
        else:
            assert choice.logprobs is None
    if payload.get("stop"):
        assert "beta" not in answer.choices[0].text[len("alpha beta"):]
    # The stream: one choice per chunk, finish_reason null until each choice's last chunk, then usage.
    chunks = text_completion_chunks(payload, "mock-text", "cmpl-1", 1, limit)
    *body, last = chunks
    assert last["choices"] == [] and last["usage"] == raw["usage"]
    texts = [""] * count
    finishes: list[str | None] = [None] * count
    for chunk in body:
        [c] = chunk["choices"]
        assert finishes[c["index"]] is None
        texts[c["index"]] += c["text"]
        finishes[c["index"]] = c["finish_reason"]
        # The SDK reads stream chunks leniently; its Completion type insists on a finish_reason.
        Completion.model_validate({**chunk, "choices": [{**c, "finish_reason": c["finish_reason"] or "stop"}]})
    assert texts == [c.text for c in answer.choices] and finishes == [c.finish_reason for c in answer.choices]
    assert text_completion(payload, "m", "i", 1, limit) == text_completion(payload, "m", "i", 1, limit)


@pytest.mark.parametrize("prompt", [None, [], 3, [1, "a"], [[1], "a"]])
def test_bad_prompts(prompt: Any) -> None:
    with pytest.raises(ValueError, match="prompt"):
        text_completion({"prompt": prompt}, "m", "i", 1, None)


# -- embeddings ------------------------------------------------------------------------------------------------------


EMBEDDINGS: list[tuple[str, Any, int]] = [
    ("string", "The quick brown fox", 1),
    ("strings", ["a cat", "a dog", "a cat"], 3),
    ("token ids", [101, 2023, 102], 1),
    ("lists of ids", [[1, 2, 3], [4, 5]], 2),
]


@pytest.mark.parametrize(("value", "count"), [(v, c) for _, v, c in EMBEDDINGS], ids=[n for n, _, _ in EMBEDDINGS])
@pytest.mark.parametrize("dims", [None, 8, 256])
def test_embeddings(value: Any, count: int, dims: int | None) -> None:
    payload: dict[str, Any] = {"input": value} if dims is None else {"input": value, "dimensions": dims}
    raw = embeddings(payload, "mock-embed", 256)
    answer = CreateEmbeddingResponse.model_validate(raw)
    assert answer.object == "list" and answer.model == "mock-embed" and len(answer.data) == count
    for i, item in enumerate(answer.data):
        assert item.index == i and item.object == "embedding" and len(item.embedding) == (dims or 256)
        assert abs(math.sqrt(sum(x * x for x in item.embedding)) - 1) < 1e-5
    tokens = sum(count_tokens(v) for v in ([value] if isinstance(value, str) else value) if isinstance(v, str)) or (
        len(value) if isinstance(value[0], int) else sum(map(len, value)))
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == tokens
    # base64: little-endian float32, decoded exactly as the SDK does it.
    encoded = embeddings({**payload, "encoding_format": "base64"}, "mock-embed", 256)
    for float_item, b64_item in zip(raw["data"], encoded["data"], strict=True):
        assert isinstance(b64_item["embedding"], str)
        # The same float32 numbers (the floats are written with the nine digits that name a float32).
        assert base64.b64decode(b64_item["embedding"]) == array.array("f", float_item["embedding"]).tobytes()
    # The SDK asks for base64 when the caller names no format, builds the response unvalidated, then decodes.
    decoded = parse_embedding_response(CreateEmbeddingResponse.construct(**encoded), encoding_format=openai.omit)
    for got, want in zip(decoded.data, answer.data, strict=True):
        assert array.array("f", got.embedding) == array.array("f", want.embedding)
    assert embeddings(payload, "mock-embed", 256) == raw


def _cosine(a: str, b: str) -> float:
    [x, y] = (d["embedding"] for d in embeddings({"input": [a, b]}, "e", 64)["data"])
    return float(sum(p * q for p, q in zip(x, y, strict=True)))


def test_embeddings_are_stable_and_similar_for_similar_texts() -> None:
    same = embeddings({"input": ["hello world", "other", "hello world"]}, "e", 32)["data"]
    assert same[0]["embedding"] == same[2]["embedding"] != same[1]["embedding"]
    assert _cosine("the cat sat on the mat", "the cat sat on a mat") > _cosine("the cat sat on the mat",
                                                                                 "quarterly revenue grew")


@pytest.mark.parametrize(("payload", "match"), [
    ({"input": ""}, "input"), ({"input": []}, "input"), ({"input": [1, "a"]}, "input"), ({"input": None}, "input"),
    ({"input": "x", "dimensions": 0}, "dimensions"), ({"input": "x", "dimensions": 65}, "dimensions"),
    ({"input": "x", "encoding_format": "hex"}, "encoding_format"),
])
def test_bad_embedding_requests(payload: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        embeddings(payload, "e", 64)


# -- moderations ----------------------------------------------------------------------------------------------------


CATEGORY_KEYS = {f.alias or n for n, f in Moderation.model_fields["categories"].annotation.model_fields.items()}  # type: ignore[union-attr]


@pytest.mark.parametrize(("value", "flags"), [
    ("Have a lovely day", [set()]),
    ("I will kill you", [{"violence", "harassment", "harassment/threatening"}]),
    (["hello", "I want to die"], [set(), {"self-harm", "self-harm/intent"}]),
    ([{"type": "text", "text": "a massacre"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
     [{"violence"}]),
    ("skills and a stable kill switch", [set()]),
], ids=["clean", "threat", "list", "multi-modal", "word boundaries"])
def test_moderation(value: Any, flags: list[set[str]]) -> None:
    raw = moderation({"input": value}, "omni-moderation-latest")
    answer = ModerationCreateResponse.model_validate(raw)
    assert answer.model == "omni-moderation-latest" and answer.id.startswith("modr-")
    assert len(answer.results) == len(flags)
    for result, wanted in zip(raw["results"], flags, strict=True):
        assert set(result["categories"]) == set(result["category_scores"]) == \
            set(result["category_applied_input_types"]) == CATEGORY_KEYS
        assert {k for k, v in result["categories"].items() if v} == wanted and result["flagged"] == bool(wanted)
        assert all(0 <= s <= 1 for s in result["category_scores"].values())
        assert all((s > 0.5) == result["categories"][k] for k, s in result["category_scores"].items())
    image = isinstance(value, list) and isinstance(value[0], dict)
    assert ("image" in raw["results"][0]["category_applied_input_types"]["violence"]) == image
    assert moderation({"input": value}, "m") == moderation({"input": value}, "m")


# -- Anthropic token counting ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    {"model": "claude", "messages": [{"role": "user", "content": "Hello, Claude"}]},
    {"model": "claude", "system": "You are terse.", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "What's the weather in Paris?"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "18C, sunny"}]}],
     "tools": [{"name": "get_weather", "description": "Weather", "input_schema": WEATHER_PARAMS}]},
], ids=["plain", "system, tools and a tool round"])
def test_count_message_tokens_matches_the_prompt_the_mock_reports(body: dict[str, Any]) -> None:
    translated = openai_request({**body, "max_tokens": 64})
    assert isinstance(translated, dict)
    assert count_message_tokens(body) == prompt_tokens(translated) == chat(translated, None).usage.prompt_tokens  # type: ignore[union-attr]
    if "tools" in body:
        assert count_message_tokens(body) > count_message_tokens({k: v for k, v in body.items() if k != "tools"})
    assert count_message_tokens({"messages": "not a list"}) > 0  # untranslatable: still an estimate
