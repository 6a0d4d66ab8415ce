"""``_Upstream``, what the Gemini and the Vertex fakes share: knobs, records, the checks beyond parsing and the
answers; and what else both use: ``Received`` (a recorded request), ``_content_text`` and ``_serve``."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from secrets import token_hex
from typing import Any, ClassVar

import orjson
from aiohttp import web

from tests.fakes.google_upstream.answers import (
    _array_frames,
    _Candidate,
    _Plan,
    _sse_frames,
    schema_example,
    word_pieces,
)
from tests.fakes.google_upstream.errors import _VERTEX_DOCS, _json, _violations_error, google_error
from tests.fakes.google_upstream.tokens import _part_tokens, prompt_token_details, text_tokens
from tests.fakes.google_upstream.wire import HARM_CATEGORIES, _Parser, _snake, _unbase64

GEMINI_MODELS = frozenset({"gemini-2.0-flash", "gemini-2.0-flash-lite", "gemini-2.5-flash", "gemini-2.5-flash-lite",
                           "gemini-2.5-pro", "gemini-3-pro-preview", "gemini-3-flash-preview"})
GEMINI_EMBEDDING_MODELS = {"gemini-embedding-001": 3072, "text-embedding-004": 768}
SKIP_SIGNATURES = frozenset({"skip_thought_signature_validator", "context_engineering_is_the_way_to_go"})
_ALLOWED_MIME = ("text/plain", "application/json", "application/xml", "application/yaml", "text/x.enum")
_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:\-]{0,63}")
_PART_DATA = ("text", "inlineData", "functionCall", "functionResponse", "fileData", "executableCode",
              "codeExecutionResult")


@dataclass
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]


def _iso_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _Upstream:
    """What the Gemini and the Vertex fakes share: knobs, records, validation and answers."""

    vertex: ClassVar[bool] = False
    reply: str = "Hello from the fake Gemini, word by word."
    json_reply: Any = None
    tool_args: dict[str, Any] | None = None
    thoughts_tokens: int = 0
    cached_tokens: int = 0
    block_prompt: bool | str = False
    safety_stop: bool = False
    safety_stop_words: int = 0
    safety_category: str = "HARM_CATEGORY_DANGEROUS_CONTENT"
    safety_ratings: bool = False
    finish_reason: str = ""
    thought_signatures: bool | None = None
    words_per_chunk: int = 2
    fail_status: int = 0
    fail_times: int = 0
    retry_delay_s: int = 17
    delay_s: float = 0.0
    drop_connection: bool = False
    die_after_chunks: int = -1
    models: frozenset[str] = GEMINI_MODELS
    embedding_models: dict[str, int] = field(default_factory=lambda: dict(GEMINI_EMBEDDING_MODELS))
    requests: list[Received] = field(default_factory=list)
    signatures: set[bytes] = field(default_factory=set)
    base_url: str = ""
    served: int = 0

    # -- the shared steps of every call -----------------------------------------------------------------------

    async def _read(self, request: web.Request) -> tuple[Any, bool]:
        """The body (parsed JSON, or None) and whether it parsed; records the request."""
        raw = await request.read()
        try:
            parsed: Any = orjson.loads(raw) if raw.strip() else {}
            ok = True
        except orjson.JSONDecodeError:
            parsed, ok = None, False
        self.requests.append(Received(request.path, dict(request.query), dict(request.headers),
                                      parsed if isinstance(parsed, dict) else {}))
        return parsed, ok

    def _parse(self, raw: Any, ok: bool, message: str, version: str) -> tuple[dict[str, Any], web.Response | None]:
        if not ok:
            return {}, _violations_error([("", "Invalid JSON payload received. Unexpected token.")])
        parser = _Parser(self.vertex, version)
        body = parser.root(raw, message)
        return body, (_violations_error(parser.violations) if parser.violations else None)

    async def _knobs(self, request: web.Request) -> web.StreamResponse | None:
        """``delay_s``, ``drop_connection`` and ``fail_status``/``fail_times``, after the request passed the checks."""
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.drop_connection:
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if self.fail_times > 0:
            self.fail_times -= 1
            return self._failure(self.fail_status)
        return None

    def _failure(self, code: int) -> web.Response:
        if code == 429:
            return google_error(429, "Resource exhausted. Please try again later. Please refer to "
                                     "https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more "
                                     "details.")
        messages = {500: "Internal error encountered.", 503: "The service is currently unavailable.",
                    504: "Deadline expired before operation could complete."}
        return google_error(code, messages.get(code, "Request failed."))

    def _signing(self, model: str) -> bool:
        return self.thought_signatures if self.thought_signatures is not None else model.startswith("gemini-3")

    # -- checks beyond parsing --------------------------------------------------------------------------------

    def _check_generate(self, body: dict[str, Any], model: str, where: str, signatures: bool = True) -> str | None:
        """Why Google would refuse a parsed GenerateContentRequest (``where`` names it in Gemini's messages)."""
        problems: list[str] = []

        def problem(path: str, message: str, vertex_message: str | None = None) -> None:
            problems.append((vertex_message or message) if self.vertex else f"* {where}.{path}: {message}\n")

        contents = body.get("contents") or []
        if not contents:
            problem("contents", "contents is not specified", "Unable to submit request because it must include at "
                    f"least one parts field, which describes the prompt input. {_VERTEX_DOCS}")
        prev_role, prev_calls = "", 0
        for i, content in enumerate(contents):
            role = content.get("role") or "user"
            if role not in ("user", "model"):
                return "Please use a valid role: user, model."
            parts = content.get("parts") or []
            if not parts:
                problem(f"contents[{i}].parts", "contents.parts must not be empty.", "Unable to submit request "
                        f"because it must include at least one parts field, which describes the prompt input. "
                        f"{_VERTEX_DOCS}")
            for j, part in enumerate(parts):
                if not any(part.get(k) for k in _PART_DATA):
                    problem(f"contents[{i}].parts[{j}].data", "required oneof field 'data' must have one initialized "
                            "field", "Unable to submit request because it has an empty text parameter. Add a value "
                            f"to the parameter and try again. {_VERTEX_DOCS}")
                elif sum(1 for k in _PART_DATA if k in part) > 1:
                    second = [k for k in _PART_DATA if k in part][1]
                    problem(f"contents[{i}].parts[{j}].data", f"oneof field 'data' is already set. Cannot set "
                            f"'{second}'")
            calls = sum(1 for p in parts if "functionCall" in p)
            responses = sum(1 for p in parts if "functionResponse" in p)
            if calls and (role != "model" or prev_role != "user"):
                return ("Please ensure that function call turn comes immediately after a user turn or after a "
                        "function response turn.")
            if responses:
                if not prev_calls:
                    return "Please ensure that function response turn comes immediately after a function call turn."
                if responses != prev_calls:
                    return ("Please ensure that the number of function response parts is equal to the number of "
                            "function call parts of the function call turn.")
            prev_role, prev_calls = role, calls
        for t, tool in enumerate(body.get("tools") or []):
            for d, decl in enumerate(tool.get("functionDeclarations") or []):
                path = f"tools[{t}].function_declarations[{d}]"
                if not _FUNCTION_NAME.fullmatch(str(decl.get("name", ""))):
                    problem(f"{path}.name", "Invalid function name. Must start with a letter or an underscore. Must "
                            "be a-z, A-Z, 0-9, or contain underscores, dots, colons and dashes, with a maximum "
                            "length of 64.")
                params = decl.get("parameters")
                if params and "parametersJsonSchema" in decl:
                    problem(f"{path}.parameters", "parameters and parameters_json_schema cannot both be set")
                if params and params.get("type") == "OBJECT" and not params.get("properties"):
                    problem(f"{path}.parameters.properties", "should be non-empty for OBJECT type")
        problems += self._check_generation_config(body.get("generationConfig") or {}, model, where)
        if problems:
            return "".join(problems) if not self.vertex else problems[0]
        return self._check_signatures(contents, model) if signatures else None

    def _check_generation_config(self, gen: dict[str, Any], model: str, where: str) -> list[str]:
        out: list[str] = []

        def problem(path: str, message: str, vertex_message: str | None = None) -> None:
            out.append((vertex_message or message) if self.vertex
                       else f"* {where}.generation_config.{path}: {message}\n")

        def ranged(name: str, low: float, high: float, value: Any) -> None:
            if value is not None and not low <= value <= high:
                problem(_snake(name), f"{_snake(name)} must be in the range [{low}, {high}]",
                        f"Unable to submit request because it has a {name} value of {value} but the supported range "
                        f"is from {low:g} (inclusive) to {high + 0.0001:g} (exclusive). Update the value and try "
                        "again.")

        ranged("temperature", 0.0, 2.0, gen.get("temperature"))
        ranged("topP", 0.0, 1.0, gen.get("topP"))
        count = gen.get("candidateCount")
        if count is not None and not 1 <= count <= 8:
            problem("candidate_count", "candidate_count must be in the range [1, 8]")
        limit = 8192 if model.startswith("gemini-2.0") else 65536
        max_out = gen.get("maxOutputTokens")
        if max_out is not None and not 0 <= max_out <= limit:
            problem("max_output_tokens", f"max_output_tokens must be in the range [1, {limit}]",
                    f"Unable to submit request because it has a maxOutputTokens value of {max_out} but the supported "
                    f"range is from 1 (inclusive) to {limit + 1} (exclusive). Update the value and try again.")
        if len(gen.get("stopSequences") or []) > 5:
            problem("stop_sequences", "the number of stop_sequences must be at most 5")
        mime = gen.get("responseMimeType")
        if mime and mime not in _ALLOWED_MIME:
            problem("response_mime_type", "allowed mimetypes are `text/plain`, `application/json`, "
                    "`application/xml`, `application/yaml` and `text/x.enum`.")
        if "responseSchema" in gen and "responseJsonSchema" in gen:
            problem("response_schema", "response_schema and response_json_schema cannot both be set")
        if ("responseSchema" in gen or "responseJsonSchema" in gen) and mime not in ("application/json",
                                                                                     "text/x.enum"):
            problem("response_mime_type", "response_mime_type must be application/json or text/x.enum when a "
                    "response schema is set")
        budget = (gen.get("thinkingConfig") or {}).get("thinkingBudget")
        if budget is not None and model.startswith(("gemini-2.5", "gemini-3")):
            low, high = (128, 32768) if "pro" in model else (0, 24576)
            if budget == 0 and low:
                out.append("Budget 0 is invalid. This model only works in thinking mode.")
            elif budget != -1 and not low <= budget <= high:
                out.append(f"The thinking budget {budget} is invalid. Please choose a value between {low} and "
                           f"{high}.")
        return out

    def _check_signatures(self, contents: list[dict[str, Any]], model: str) -> str | None:
        """Gemini 3's rule: in the current turn (after the last user text), every model turn's first function call
        carries a thought signature the model issued."""
        if not self._signing(model):
            return None
        start = max((i for i, c in enumerate(contents) if (c.get("role") or "user") == "user"
                     and any("functionResponse" not in p for p in c.get("parts") or [])), default=-1)
        for i in range(start + 1, len(contents)):
            calls = [p for p in contents[i].get("parts") or [] if "functionCall" in p]
            if not calls:
                continue
            signature = calls[0].get("thoughtSignature")
            if not signature:
                name = calls[0]["functionCall"].get("name")
                return ("Function call is missing a thought_signature in functionCall parts. This is required for "
                        "tools to work correctly, and missing thought_signature may lead to degraded model "
                        f"performance. Additional data, function call `default_api:{name}` , position {i + 1}. "
                        "Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details.")
            if signature not in SKIP_SIGNATURES and _unbase64(signature) not in self.signatures:
                return "Corrupted thought signature."
        return None

    # -- generation -------------------------------------------------------------------------------------------

    def _plan(self, body: dict[str, Any], model: str, response_id: str) -> _Plan:
        details = prompt_token_details(body)
        prompt = sum(details.values())
        cached = min(self.cached_tokens, prompt)
        if body.get("cachedContent"):
            prompt += self.cached_tokens
            details["TEXT"] = details.get("TEXT", 0) + self.cached_tokens
            cached = self.cached_tokens
        plan = _Plan(prompt=prompt, details=details, cached=cached)
        if self.block_prompt:
            plan.blocked = self.block_prompt if isinstance(self.block_prompt, str) else "SAFETY"
            return plan
        gen = body.get("generationConfig") or {}
        thinking = gen.get("thinkingConfig") or {}
        budget = thinking.get("thinkingBudget")
        thoughts = self.thoughts_tokens if not model.startswith("gemini-2.0") and budget != 0 else 0
        if budget is not None and budget > 0:
            thoughts = min(thoughts, budget)
        room: int | None = gen.get("maxOutputTokens") or None
        if room is not None:
            thoughts = min(thoughts, room)
            room -= thoughts
        plan.thoughts = thoughts
        calls = self._calls(body)
        text = "" if calls else self._text(gen)
        signing = self._signing(model) or (bool(thoughts) and bool(calls))
        for index in range(gen.get("candidateCount") or 1):
            cand = _Candidate(thought=("**Thinking it through**\n\nWorking out the answer to the request."
                                       if thinking.get("includeThoughts") and thoughts else ""))
            if calls:
                cand.parts = [{"functionCall": call} for call in calls]
                cand.tokens = sum(_part_tokens(p)[1] for p in cand.parts)
                if room is not None and cand.tokens > room:
                    cand.parts, cand.tokens, cand.finish = [], 0, "MAX_TOKENS"
            else:
                kept = text
                if room is not None and text_tokens(kept) > room:
                    words = kept.split(" ")
                    while words and text_tokens(" ".join(words)) > room:
                        words.pop()
                    kept, cand.finish = " ".join(words), "MAX_TOKENS"
                if self.safety_stop:
                    kept, cand.finish = " ".join(kept.split(" ")[: self.safety_stop_words]), "SAFETY"
                    cand.ratings = self._ratings(blocked=True)
                cand.parts = [{"text": kept}] if kept else []
                cand.tokens = text_tokens(kept)
            if signing and cand.parts:
                signature = hashlib.sha256(f"{response_id}/{index}".encode()).digest()
                self.signatures.add(signature)
                cand.parts[0 if calls else -1]["thoughtSignature"] = base64.b64encode(signature).decode()
            if self.finish_reason:
                cand.finish = self.finish_reason
            if self.safety_ratings and cand.ratings is None:
                cand.ratings = self._ratings(blocked=False)
            plan.candidates.append(cand)
        return plan

    def _calls(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        declarations = [d for tool in body.get("tools") or [] for d in tool.get("functionDeclarations") or []]
        config = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
        mode = config.get("mode") or "AUTO"
        if not declarations or mode == "NONE":
            return []
        last = (body.get("contents") or [{}])[-1]
        parts = last.get("parts") or []
        said = " ".join(str(p.get("text", "")) for p in parts)
        answered = any("functionResponse" in p for p in parts)
        if mode != "ANY" and (answered or not re.search(r"\bcall\b", said, re.IGNORECASE)):
            return []
        allowed = config.get("allowedFunctionNames") or []
        pool = [d for d in declarations if not allowed or d.get("name") in allowed] or declarations
        named = [d for d in pool if d.get("name") and re.search(rf"\b{re.escape(d['name'])}\b", said)] or pool[:1]
        return [{"name": d["name"], "args": self.tool_args if self.tool_args is not None
                 else schema_example(d.get("parameters") or d.get("parametersJsonSchema")) or {}} for d in named]

    def _text(self, gen: dict[str, Any]) -> str:
        mime = gen.get("responseMimeType") or "text/plain"
        schema = gen.get("responseSchema") or gen.get("responseJsonSchema")
        if mime == "application/json":
            value = self.json_reply if self.json_reply is not None else (
                schema_example(schema) if schema else {"reply": self.reply})
            text = orjson.dumps(value).decode()
        elif mime == "text/x.enum" and isinstance(schema, dict) and schema.get("enum"):
            text = str(schema["enum"][0])
        else:
            text = self.reply
        cuts = [text.find(s) for s in gen.get("stopSequences") or [] if s and s in text]
        return text[: min(cuts)] if cuts else text

    def _ratings(self, blocked: bool) -> list[dict[str, Any]]:
        ratings: list[dict[str, Any]] = []
        for category in HARM_CATEGORIES:
            hit = blocked and category == self.safety_category
            rating: dict[str, Any] = {"category": category, "probability": "HIGH" if hit else "NEGLIGIBLE"}
            if self.vertex:
                rating.update(probabilityScore=0.93 if hit else 0.04,
                              severity="HARM_SEVERITY_HIGH" if hit else "HARM_SEVERITY_NEGLIGIBLE",
                              severityScore=0.88 if hit else 0.02)
            if hit:
                rating["blocked"] = True
            ratings.append(rating)
        return ratings

    def _usage(self, plan: _Plan, candidates_tokens: int | None = None) -> dict[str, Any]:
        output = sum(c.tokens for c in plan.candidates) if candidates_tokens is None else candidates_tokens
        usage: dict[str, Any] = {"promptTokenCount": plan.prompt, "candidatesTokenCount": output,
                                 "totalTokenCount": plan.prompt + output + plan.thoughts,
                                 "cachedContentTokenCount": plan.cached,
                                 "promptTokensDetails": [{"modality": m, "tokenCount": n}
                                                         for m, n in plan.details.items()]}
        if plan.cached:
            usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": plan.cached}]
        if self.vertex and output:
            usage["candidatesTokensDetails"] = [{"modality": "TEXT", "tokenCount": output}]
        usage["thoughtsTokenCount"] = plan.thoughts
        if self.vertex:
            usage["trafficType"] = "ON_DEMAND"
        return {k: v for k, v in usage.items() if v != 0}

    def _envelope(self, model: str, response_id: str, created: str) -> dict[str, Any]:
        if self.vertex:
            return {"modelVersion": model, "createTime": created, "responseId": response_id}
        return {"modelVersion": model, "responseId": response_id}

    def _candidate_json(self, cand: _Candidate, index: int, parts: list[dict[str, Any]] | None,
                        finished: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if parts:
            out["content"] = {"parts": parts, "role": "model"}
        elif finished and cand.finish != "SAFETY":
            out["content"] = {"role": "model"}
        if finished:
            out["finishReason"] = cand.finish
            if self.vertex and cand.parts and "text" in cand.parts[0]:
                out["avgLogprobs"] = -0.0421
        if index or not self.vertex:
            out["index"] = index
        if finished and cand.ratings is not None:
            out["safetyRatings"] = cand.ratings
        return out

    def _blocked(self, plan: _Plan, envelope: dict[str, Any]) -> dict[str, Any]:
        feedback: dict[str, Any] = {"blockReason": plan.blocked, "safetyRatings": self._ratings(blocked=True)}
        if self.vertex:
            feedback["blockReasonMessage"] = "The prompt was blocked due to safety reasons."
        usage = self._usage(_Plan(prompt=plan.prompt, details=plan.details, cached=plan.cached))
        return {"promptFeedback": feedback, "usageMetadata": usage, **envelope}

    def _response(self, plan: _Plan, envelope: dict[str, Any]) -> dict[str, Any]:
        if plan.blocked:
            return self._blocked(plan, envelope)
        candidates = []
        for index, cand in enumerate(plan.candidates):
            thought = [{"text": cand.thought, "thought": True}] if cand.thought else []
            candidates.append(self._candidate_json(cand, index, thought + cand.parts, finished=True))
        return {"candidates": candidates, "usageMetadata": self._usage(plan), **envelope}

    def _chunks(self, plan: _Plan, envelope: dict[str, Any]) -> list[dict[str, Any]]:
        """The stream: per candidate, its thought, then its text ``words_per_chunk`` words a chunk (or its function
        calls in one), chunk k carrying every candidate's piece k; ``finishReason`` on the last chunk."""
        if plan.blocked:
            return [self._blocked(plan, envelope)]
        pieces: list[list[list[dict[str, Any]]]] = []
        for cand in plan.candidates:
            mine: list[list[dict[str, Any]]] = [[{"text": cand.thought, "thought": True}]] if cand.thought else []
            if cand.parts and "text" in cand.parts[0]:
                words = word_pieces(cand.parts[0]["text"])
                step = max(1, self.words_per_chunk)
                mine += [[{"text": "".join(words[i:i + step])}] for i in range(0, len(words), step)]
                if "thoughtSignature" in cand.parts[0]:
                    mine[-1][0]["thoughtSignature"] = cand.parts[0]["thoughtSignature"]
            elif cand.parts:
                mine.append(cand.parts)
            pieces.append(mine)
        count = max(1, *(len(p) for p in pieces))
        chunks: list[dict[str, Any]] = []
        emitted = [""] * len(plan.candidates)
        called = [0] * len(plan.candidates)
        for k in range(count):
            last = k == count - 1
            candidates = []
            for index, cand in enumerate(plan.candidates):
                parts = pieces[index][k] if k < len(pieces[index]) else None
                if parts is None and not last:
                    continue
                emitted[index] += "".join(p.get("text", "") for p in parts or [] if not p.get("thought"))
                called[index] += sum(_part_tokens(p)[1] for p in parts or [] if "functionCall" in p)
                candidates.append(self._candidate_json(cand, index, parts, finished=last))
            chunk: dict[str, Any] = {"candidates": candidates}
            if last:
                chunk["usageMetadata"] = self._usage(plan)
            elif not self.vertex:
                so_far = sum(text_tokens(t) + c for t, c in zip(emitted, called, strict=True))
                chunk["usageMetadata"] = self._usage(plan, candidates_tokens=so_far)
            chunks.append({**chunk, **envelope})
        return chunks

    async def _generate(self, request: web.Request, body: dict[str, Any], model: str,
                        stream: bool) -> web.StreamResponse:
        self.served += 1
        response_id = f"fake{self.served:04d}{token_hex(8)}"
        plan = self._plan(body, model, response_id)
        envelope = self._envelope(model, response_id, _iso_now())
        if not stream:
            return _json(self._response(plan, envelope))
        chunks = self._chunks(plan, envelope)
        sse = request.query.get("alt") == "sse"
        headers = {"Content-Type": "text/event-stream" if sse else "application/json; charset=UTF-8",
                   "Content-Disposition": "attachment", "Vary": "Origin, X-Origin, Referer"}
        resp = web.StreamResponse(headers=headers)
        await resp.prepare(request)
        frames = _sse_frames(chunks) if sse else _array_frames(chunks)
        for i, frame in enumerate(frames):
            if i == self.die_after_chunks:
                assert request.transport is not None
                request.transport.close()
                return resp
            await resp.write(frame)
        await resp.write_eof()
        return resp

    def _embedding_dims(self, model: str, wanted: Any, where: str) -> tuple[int, str | None]:
        full = self.embedding_models[model]
        if wanted is None or wanted == 0:
            return full, None
        if not 1 <= wanted <= full:
            return full, (f"Unable to submit request because the output dimensionality {wanted} is not supported. "
                          f"The supported range is from 1 to {full}." if self.vertex
                          else f"* {where}.output_dimensionality: output_dimensionality must be in the range "
                          f"[1, {full}]\n")
        return int(wanted), None


def _content_text(content: Any) -> str:
    if not isinstance(content, dict):
        return ""
    return "".join(str(p.get("text", "")) for p in content.get("parts") or [] if isinstance(p, dict))


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"
