"""``_Upstream``, what the Gemini and the Vertex fakes share: its knobs, records and the shared steps of every call
are ``_Prelude``'s (``prelude``), the checks beyond parsing ``_Checks``'s (``checks``), the answers
``_Generation``'s (``generation``); and what else both use: ``_content_text`` and ``_serve``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.google_upstream.checks import _Checks
from tests.fakes.google_upstream.generation import _Generation


@dataclass
class _Upstream(_Checks, _Generation):
    """What the Gemini and the Vertex fakes share: knobs, records, validation and answers."""


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
