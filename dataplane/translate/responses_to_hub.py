"""Inbound translation: an OpenAI Responses API client (``client.responses.create``, the OpenAI Agents SDK,
LangChain's ``use_responses_api``) calling the gateway's ``POST /v1/responses``. Pure.

``hub_request`` builds the chat completion body the request path validates and routes like any other; the answer
goes back through ``dataplane.translate.hub_to_responses``. What the chat completions hub cannot express is an
``Untranslatable`` value (the caller answers 400 with its ``param``, e.g. ``input[3].call_id``); nothing raises.

Mapped: ``model``; ``instructions`` (a leading system message); ``input`` (a string is one user message; items are
messages with or without ``"type": "message"``, ``function_call`` items, merged into one assistant message with
``tool_calls`` as the chat schema wants, and ``function_call_output`` items, each a ``tool`` message); function
``tools``; ``tool_choice``; ``parallel_tool_calls``; ``text.format`` (``response_format``) and ``text.verbosity``;
``max_output_tokens`` (``max_completion_tokens``); ``temperature``; ``top_p``; ``user``; ``reasoning.effort``
(``reasoning_effort``); ``top_logprobs`` and ``include: ["message.output_text.logprobs"]`` (``logprobs``);
``stream`` (with ``stream_options.include_usage``, which lets the stream report usage in ``response.completed``).

Dropped, because a stateless gateway has nothing to do with them or the hub has no field for them: ``store``
(nothing is stored: answers say ``store: false``), ``metadata`` (echoed back, never sent upstream), ``truncation``,
``service_tier``, ``include`` (but for logprobs), ``prompt_cache_key``, ``prompt_cache_retention``,
``prompt_cache_options``, ``safety_identifier``, ``stream_options``, ``max_tool_calls`` (it counts built-in tool
calls only), ``context_management``, ``background: false``, ``reasoning.summary`` (chat completions returns no
reasoning summary), ``reasoning`` input items (they carry the model's encrypted state for a stateful server) and
the ``id``/``status``/``phase`` of items sent back. A function tool's ``strict`` is passed on only when set: the
chat default (not strict) is left alone, since strict mode rejects schemas that are not strict-compatible.
``tool_choice`` and ``parallel_tool_calls`` go upstream only with tools, because chat completions refuses them
without; a ``tool_choice`` that needs a tool when there is none is refused as the Responses API would.

Refused: ``previous_response_id``, ``conversation``, ``background: true`` and ``item_reference`` items (this
deployment serves the Responses API statelessly: the client sends the whole conversation), stored ``prompt``
templates, built-in tools (web search, file search, code interpreter, computer use, image generation, MCP, shell,
...: hosted tools are not supported until the catalog can price them), custom tools, their ``tool_choice`` forms,
``input_image``/``input_file`` by ``file_id`` (files live at one provider), and items of any other type.
"""

from __future__ import annotations

from typing import Any

from dataplane.translate.anthropic_common import Untranslatable

BUILT_IN_TOOLS = frozenset({
    "web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11", "file_search",
    "code_interpreter", "computer", "computer_use_preview", "image_generation", "mcp", "local_shell", "shell",
    "apply_patch", "tool_search", "programmatic_tool_calling",
})
STATELESS = "this deployment serves the Responses API statelessly: send the whole conversation in 'input'"
_TEXT_PARTS = ("input_text", "output_text")
_IMAGE_DETAILS = ("auto", "low", "high")
_Result = dict[str, Any] | Untranslatable


def hub_request(body: dict[str, Any]) -> _Result:
    """The chat completion body for a Responses API request body, or why there is none."""
    if not isinstance(body, dict):
        return Untranslatable("the request body must be a JSON object")
    refused = _stateful(body)
    if refused is not None:
        return refused
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return Untranslatable("model: Field required (a non-empty string)", "model")
    messages = _messages(body.get("instructions"), body.get("input"))
    if isinstance(messages, Untranslatable):
        return messages
    payload: dict[str, Any] = {"model": model, "messages": messages}
    for step in (_tool_fields, _text_fields, _sampling_fields):
        fields = step(body)
        if isinstance(fields, Untranslatable):
            return fields
        payload.update(fields)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        return Untranslatable("stream: must be a boolean", "stream")
    if stream:
        # The usage chunk is what lets response.completed carry usage.
        payload["stream"] = True
        payload["stream_options"] = {"include_usage": True}
    return payload


def _stateful(body: dict[str, Any]) -> Untranslatable | None:
    for name in ("previous_response_id", "conversation"):
        if body.get(name) is not None:
            return Untranslatable(f"{name}: {STATELESS}", name)
    if body.get("background") is True:
        return Untranslatable(f"background: background responses need stored state; {STATELESS}", "background")
    if body.get("prompt") is not None:
        return Untranslatable("prompt: stored prompt templates cannot be resolved by this gateway; send "
                              "'instructions' and 'input' instead", "prompt")
    return None


def _messages(instructions: Any, items: Any) -> list[dict[str, Any]] | Untranslatable:
    """The chat messages for ``instructions`` and ``input`` (a string or a list of items)."""
    out: list[dict[str, Any]] = []
    if instructions is not None:
        if not isinstance(instructions, str):
            return Untranslatable("instructions: must be a string", "instructions")
        if instructions:
            out.append({"role": "system", "content": instructions})
    if isinstance(items, str):
        out.append({"role": "user", "content": items})
    elif isinstance(items, list):
        for i, item in enumerate(items):
            refused = _add_item(out, item, f"input[{i}]")
            if refused is not None:
                return refused
    elif items is not None:
        return Untranslatable("input: must be a string or a list of items", "input")
    if not out:
        return Untranslatable("input: Field required (a string or a non-empty list of items)", "input")
    return out


def _add_item(out: list[dict[str, Any]], item: Any, where: str) -> Untranslatable | None:
    """Append the chat form of one input item to ``out``; a function call joins the assistant message before it."""
    if not isinstance(item, dict):
        return Untranslatable(f"{where}: must be an object", where)
    kind = item.get("type") or "message"  # the type is optional on a message
    if kind == "message":
        message = _message(item, where)
        if isinstance(message, Untranslatable):
            return message
        out.append(message)
    elif kind == "function_call":
        call = _tool_call(item, where)
        if isinstance(call, Untranslatable):
            return call
        last = out[-1] if out else None
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
        else:
            out.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        result = _tool_result(item, where)
        if isinstance(result, Untranslatable):
            return result
        out.append(result)
    elif kind == "reasoning":
        return None  # the model's own (encrypted) state for a stateful server: nothing a chat upstream takes back
    elif kind == "item_reference":
        return Untranslatable(f"{where}: item references need stored items; {STATELESS}", f"{where}.type")
    else:
        return Untranslatable(f"{where}.type: input items of type {kind!r} are not supported by this gateway",
                              f"{where}.type")
    return None


def _message(item: dict[str, Any], where: str) -> _Result:
    role = item.get("role")
    if role not in ("user", "system", "developer", "assistant"):
        return Untranslatable(f"{where}.role: must be one of 'user', 'system', 'developer', 'assistant'",
                              f"{where}.role")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        return Untranslatable(f"{where}.content: must be a string or a list of content parts", f"{where}.content")
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        converted = _part(part, role, f"{where}.content[{j}]")
        if isinstance(converted, Untranslatable):
            return converted
        parts.append(converted)
    return {"role": role, "content": _compact(parts)}


def _compact(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A single text part as a plain string (the form every upstream takes), else the parts."""
    if not parts:
        return ""
    if len(parts) == 1 and parts[0]["type"] == "text":
        text: str = parts[0]["text"]
        return text
    return parts


def _part(part: Any, role: str, where: str) -> _Result:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        return Untranslatable(f"{where}: must be an object with a 'type'", where)
    kind = part["type"]
    if kind in _TEXT_PARTS:
        if not isinstance(part.get("text"), str):
            return Untranslatable(f"{where}.text: must be a string", f"{where}.text")
        return {"type": "text", "text": part["text"]}
    if kind == "refusal" and role == "assistant":
        if not isinstance(part.get("refusal"), str):
            return Untranslatable(f"{where}.refusal: must be a string", f"{where}.refusal")
        return {"type": "refusal", "refusal": part["refusal"]}
    if kind == "input_image" and role == "user":
        return _image(part, where)
    if kind == "input_file" and role == "user":
        return _file(part, where)
    return Untranslatable(f"{where}.type: content parts of type {kind!r} are not supported in {role} messages",
                          f"{where}.type")


def _image(part: dict[str, Any], where: str) -> _Result:
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        if part.get("file_id") is not None:
            return Untranslatable(f"{where}.file_id: images by file id are not supported by this gateway; send "
                                  "'image_url' (a URL or a data URL)", f"{where}.file_id")
        return Untranslatable(f"{where}.image_url: Field required (a URL or a data URL)", f"{where}.image_url")
    image: dict[str, Any] = {"url": url}
    if part.get("detail") in _IMAGE_DETAILS:
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def _file(part: dict[str, Any], where: str) -> _Result:
    data = part.get("file_data")
    if not isinstance(data, str) or not data:
        return Untranslatable(f"{where}: only files sent inline as 'file_data' are supported by this gateway "
                              "(not by 'file_id' or 'file_url')", f"{where}.file_data")
    file: dict[str, Any] = {"file_data": data}
    if isinstance(part.get("filename"), str):
        file["filename"] = part["filename"]
    return {"type": "file", "file": file}


def _tool_call(item: dict[str, Any], where: str) -> _Result:
    for name in ("call_id", "name"):
        if not isinstance(item.get(name), str) or not item[name]:
            return Untranslatable(f"{where}.{name}: Field required (a non-empty string)", f"{where}.{name}")
    if not isinstance(item.get("arguments"), str):
        return Untranslatable(f"{where}.arguments: Field required (a JSON string)", f"{where}.arguments")
    return {"id": item["call_id"], "type": "function",
            "function": {"name": item["name"], "arguments": item["arguments"]}}


def _tool_result(item: dict[str, Any], where: str) -> _Result:
    if not isinstance(item.get("call_id"), str) or not item["call_id"]:
        return Untranslatable(f"{where}.call_id: Field required (a non-empty string)", f"{where}.call_id")
    output = item.get("output")
    if isinstance(output, str):
        return {"role": "tool", "tool_call_id": item["call_id"], "content": output}
    if not isinstance(output, list):
        return Untranslatable(f"{where}.output: must be a string or a list of content parts", f"{where}.output")
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(output):
        # A chat tool message holds text only; images and files in a tool result have no chat form.
        if not isinstance(part, dict) or part.get("type") not in _TEXT_PARTS or not isinstance(part.get("text"), str):
            return Untranslatable(f"{where}.output[{j}]: only text parts are supported in a function call output",
                                  f"{where}.output[{j}]")
        parts.append({"type": "text", "text": part["text"]})
    return {"role": "tool", "tool_call_id": item["call_id"], "content": _compact(parts)}


def _tool_fields(body: dict[str, Any]) -> _Result:
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        return Untranslatable("tools: must be a list of tools", "tools")
    out: dict[str, Any] = {}
    converted: list[dict[str, Any]] = []
    for i, tool in enumerate(tools or []):
        fn = _function_tool(tool, f"tools[{i}]")
        if isinstance(fn, Untranslatable):
            return fn
        converted.append(fn)
    choice = body.get("tool_choice")
    if converted:
        out["tools"] = converted
        if isinstance(body.get("parallel_tool_calls"), bool):
            out["parallel_tool_calls"] = body["parallel_tool_calls"]
    if choice is not None:
        chat_choice = _tool_choice(choice)
        if isinstance(chat_choice, Untranslatable):
            return chat_choice
        if converted:
            out["tool_choice"] = chat_choice
        elif chat_choice not in ("auto", "none"):
            return Untranslatable("tool_choice: a tool choice other than 'auto' or 'none' needs 'tools'",
                                  "tool_choice")
    return out


def _function_tool(tool: Any, where: str) -> _Result:
    if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
        return Untranslatable(f"{where}: must be an object with a 'type'", where)
    kind = tool["type"]
    if kind in BUILT_IN_TOOLS:
        return Untranslatable(f"{where}.type: {kind!r} is a built-in tool; hosted tools are not supported by this "
                              "gateway until the catalog can price them (declare a function tool instead)",
                              f"{where}.type")
    if kind != "function":
        return Untranslatable(f"{where}.type: tools of type {kind!r} are not supported by this gateway; only "
                              "function tools are", f"{where}.type")
    if not isinstance(tool.get("name"), str) or not tool["name"]:
        return Untranslatable(f"{where}.name: Field required (a non-empty string)", f"{where}.name")
    fn: dict[str, Any] = {"name": tool["name"]}
    if isinstance(tool.get("description"), str):
        fn["description"] = tool["description"]
    parameters = tool.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        return Untranslatable(f"{where}.parameters: must be a JSON schema object", f"{where}.parameters")
    if parameters is not None:
        fn["parameters"] = parameters
    if isinstance(tool.get("strict"), bool):
        fn["strict"] = tool["strict"]
    return {"type": "function", "function": fn}


def _tool_choice(choice: Any) -> str | dict[str, Any] | Untranslatable:
    if isinstance(choice, str) and choice in ("auto", "none", "required"):
        return choice
    if not isinstance(choice, dict) or not isinstance(choice.get("type"), str):
        return Untranslatable("tool_choice: must be 'auto', 'none', 'required' or an object with a 'type'",
                              "tool_choice")
    kind = choice["type"]
    if kind == "function" and isinstance(choice.get("name"), str) and choice["name"]:
        return {"type": "function", "function": {"name": choice["name"]}}
    if kind == "allowed_tools":
        return _allowed_tools(choice)
    return Untranslatable(f"tool_choice.type: {kind!r} is not supported by this gateway; only 'auto', 'none', "
                          "'required', a function (with a name) or allowed function tools are", "tool_choice.type")


def _allowed_tools(choice: dict[str, Any]) -> dict[str, Any] | Untranslatable:
    tools = choice.get("tools")
    if choice.get("mode") not in ("auto", "required") or not isinstance(tools, list):
        return Untranslatable("tool_choice: allowed_tools needs a 'mode' ('auto' or 'required') and a list of "
                              "'tools'", "tool_choice")
    names: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("name"), str):
            return Untranslatable(f"tool_choice.tools[{i}]: only function tools (with a name) are supported",
                                  f"tool_choice.tools[{i}]")
        names.append({"type": "function", "function": {"name": tool["name"]}})
    return {"type": "allowed_tools", "allowed_tools": {"mode": choice["mode"], "tools": names}}


def _text_fields(body: dict[str, Any]) -> _Result:
    text = body.get("text")
    if text is None:
        return {}
    if not isinstance(text, dict):
        return Untranslatable("text: must be an object", "text")
    out: dict[str, Any] = {}
    if text.get("verbosity") in ("low", "medium", "high"):
        out["verbosity"] = text["verbosity"]
    fmt = text.get("format")
    if fmt is None:
        return out
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return out
    if kind == "json_object":
        out["response_format"] = {"type": "json_object"}
        return out
    if kind != "json_schema" or not isinstance(fmt, dict):
        return Untranslatable("text.format.type: must be 'text', 'json_object' or 'json_schema'", "text.format.type")
    if not isinstance(fmt.get("name"), str) or not fmt["name"]:
        return Untranslatable("text.format.name: Field required (a non-empty string)", "text.format.name")
    if not isinstance(fmt.get("schema"), dict):
        return Untranslatable("text.format.schema: Field required (a JSON schema object)", "text.format.schema")
    schema: dict[str, Any] = {"name": fmt["name"], "schema": fmt["schema"]}
    for name in ("strict", "description"):
        if fmt.get(name) is not None:
            schema[name] = fmt[name]
    out["response_format"] = {"type": "json_schema", "json_schema": schema}
    return out


def _sampling_fields(body: dict[str, Any]) -> _Result:
    out: dict[str, Any] = {}
    limit = body.get("max_output_tokens")
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            return Untranslatable("max_output_tokens: must be a positive integer", "max_output_tokens")
        out["max_completion_tokens"] = limit
    for name in ("temperature", "top_p", "user"):
        if body.get(name) is not None:
            out[name] = body[name]  # same name and meaning in chat completions, validated there
    reasoning = body.get("reasoning")
    if reasoning is not None:
        if not isinstance(reasoning, dict):
            return Untranslatable("reasoning: must be an object", "reasoning")
        if reasoning.get("effort") is not None:
            out["reasoning_effort"] = reasoning["effort"]
    top = body.get("top_logprobs")
    if top is not None:
        if not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= 20:
            return Untranslatable("top_logprobs: must be an integer between 0 and 20", "top_logprobs")
        out["logprobs"] = True
        out["top_logprobs"] = top
    include = body.get("include")
    if isinstance(include, list) and "message.output_text.logprobs" in include:
        out["logprobs"] = True
    return out
