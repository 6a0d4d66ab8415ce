"""A scripted HTTP/1.1 upstream on a raw socket: each request is answered with the bytes a test gives, as given.

For the framings no framework would produce: malformed status lines, bad chunk sizes, Content-Length with
Transfer-Encoding, endless heads. ``async with scripted_upstream(answer) as up:`` listens on loopback;
``answer(n)`` gives the answer to the ``n``-th request (0-based, across connections): one ``bytes`` written
at once, or an iterable of pieces written one by one with ``pause_s`` between them (an endless generator
trickles until the client hangs up). With ``keep_open`` the connection waits for the next request; without,
the server closes it after each answer. ``up.connections`` and ``up.requests`` tell what arrived.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

Answer = bytes | Iterable[bytes]


@dataclass
class ScriptedUpstream:
    port: int = 0
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


@asynccontextmanager
async def scripted_upstream(answer: Callable[[int], Answer] | Answer, *, keep_open: bool = True,
                            pause_s: float = 0.0) -> AsyncIterator[ScriptedUpstream]:
    up = ScriptedUpstream()
    writers: list[asyncio.StreamWriter] = []
    serving: list[asyncio.Task[object]] = []

    def answer_to(n: int) -> Answer:
        return answer(n) if callable(answer) else answer

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up.connections += 1
        writers.append(writer)
        task = asyncio.current_task()
        if task is not None:
            serving.append(task)
        try:
            while True:
                up.requests.append(await _read_request(reader))
                script = answer_to(len(up.requests) - 1)
                for piece in [script] if isinstance(script, bytes) else script:
                    writer.write(piece)
                    await writer.drain()
                    if pause_s:
                        await asyncio.sleep(pause_s)
                if not keep_open:
                    break
        except (OSError, asyncio.IncompleteReadError):
            pass  # the client hung up: the script ends
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    up.port = server.sockets[0].getsockname()[1]
    try:
        yield up
    finally:
        server.close()
        for writer in writers:
            writer.close()  # a script still writing ends at its next drain
        if serving:
            await asyncio.wait(serving, timeout=1.0)
