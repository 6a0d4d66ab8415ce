"""A live headless Chromium driven over the DevTools protocol, for tests that must watch a page change (the
dashboard refreshing itself) rather than read one dump of it.

``live_browser(profile)`` starts Chromium with a fresh profile and ``--remote-debugging-port=0``, reads the port
it chose from ``DevToolsActivePort``, and attaches to its page over a WebSocket (aiohttp's client: no extra
dependency). ``Page.evaluate`` runs JavaScript in the page and returns its JSON value; ``Page.screenshot`` writes
a full-page PNG. Chromium is killed at the end.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.analytics.test_dashboard_chromium import chromium

START_SECONDS = 30.0
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"  # tests/artifacts (git-ignored): PNGs to look at


class Page:
    """One browser tab. Not task-safe: one command at a time."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    async def command(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self._ids)
        await self._ws.send_json({"id": ident, "method": method, "params": params})
        while True:
            message = await asyncio.wait_for(self._ws.receive_json(), START_SECONDS)
            if message.get("id") == ident:
                if "error" in message:
                    pytest.fail(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    async def evaluate(self, expression: str) -> Any:
        result = await self.command("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            pytest.fail(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def goto(self, url: str) -> None:
        await self.command("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'", what=url)

    async def wait_for(self, expression: str, within: float = 20.0, what: str = "") -> float:
        """Poll a JavaScript condition until it is true; returns the seconds it took."""
        start = time.monotonic()
        while not await self.evaluate(expression):
            if time.monotonic() - start > within:
                pytest.fail(f"{what or expression} not true within {within} s")
            await asyncio.sleep(0.1)
        return time.monotonic() - start

    async def screenshot(self, path: Path, width: int = 1400) -> bytes:
        """A PNG of the whole page at ``width`` CSS pixels, written to ``path`` (its folder is created)."""
        await self.command("Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1,
                           mobile=False)
        height = int(await self.evaluate("document.documentElement.scrollHeight"))
        await self.command("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                           mobile=False)
        shot = await self.command("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        data = base64.b64decode(shot["data"])
        await asyncio.to_thread(_write, path, data)
        return data


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@asynccontextmanager
async def live_browser(profile: Path) -> AsyncIterator[Page]:
    process = await asyncio.create_subprocess_exec(
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
        "--remote-debugging-port=0", "--remote-allow-origins=*", f"--user-data-dir={profile}", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_SECONDS
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if process.returncode is not None or time.monotonic() > deadline:
                pytest.fail("chromium did not open its DevTools port")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split("\n")[0])
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json()
            page = next(t for t in targets if t["type"] == "page")
            async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                tab = Page(ws)
                await tab.command("Page.enable")
                yield tab
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
