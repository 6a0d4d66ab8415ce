"""OpenAI's error envelope ``{"error": {"message", "type", "param", "code"}}`` (``_error``, ``_invalid`` for a 400
``invalid_request_error``), the messages the fake shares (``INVALID``, ``UNPARSABLE``) and ``_json``, the answer
of a JSON body."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

INVALID = "'$.{}' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
UNPARSABLE = ("We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP "
              "library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If "
              "you have trouble figuring out how to fix this, please contact us through our help center at "
              "help.openai.com.)")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, message: str, type_: str, code: str | None, param: str | None = None) -> web.Response:
    return web.json_response({"error": {"message": message, "type": type_, "param": param, "code": code}},
                             status=status)


def _invalid(message: str, param: str | None = None, code: str | None = None) -> web.Response:
    return _error(400, message, "invalid_request_error", code, param)
