"""The checks beyond parsing (``_Checks``): why Google would refuse a parsed GenerateContentRequest (contents,
turn order, function declarations, the generation config, Gemini 3's thought signatures) or an embedding's output
dimensionality, in Gemini's or Vertex's words."""

from __future__ import annotations

import re
from typing import Any

from tests.fakes.google_upstream.errors import _VERTEX_DOCS
from tests.fakes.google_upstream.prelude import _Prelude
from tests.fakes.google_upstream.wire import _snake, _unbase64

SKIP_SIGNATURES = frozenset({"skip_thought_signature_validator", "context_engineering_is_the_way_to_go"})
_ALLOWED_MIME = ("text/plain", "application/json", "application/xml", "application/yaml", "text/x.enum")
_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:\-]{0,63}")
_PART_DATA = ("text", "inlineData", "functionCall", "functionResponse", "fileData", "executableCode",
              "codeExecutionResult")


class _Checks(_Prelude):
    """``_Upstream``'s checks beyond parsing."""

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

