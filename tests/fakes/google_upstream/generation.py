"""The answers (``_Generation``): the plan of a GenerateContentResponse (function calls, JSON or text, thoughts,
``maxOutputTokens``, stop sequences, safety stops and blocks, thought signatures), its usage and envelope, and how
it is sent: whole, or streamed as SSE frames or one JSON array, ``words_per_chunk`` words a chunk."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime
from secrets import token_hex
from typing import Any

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
from tests.fakes.google_upstream.errors import _json
from tests.fakes.google_upstream.prelude import _Prelude
from tests.fakes.google_upstream.tokens import _part_tokens, prompt_token_details, text_tokens
from tests.fakes.google_upstream.wire import HARM_CATEGORIES
from tests.fakes.sse import send_frames


def _iso_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Generation(_Prelude):
    """``_Upstream``'s generation: plans, responses and streams."""

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
        return await send_frames(request, resp, _sse_frames(chunks) if sse else _array_frames(chunks),
                                 self.die_after_chunks)
