"""Reading a chat completions stream as the official SDK gives it: what the end-to-end tests of the adapters
assert on."""

from __future__ import annotations

from openai import AsyncStream
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletionChunk


async def read_chat_stream(stream: AsyncStream[ChatCompletionChunk]) -> tuple[str, str | None, CompletionUsage | None]:
    """The text of the stream's first choice, its last finish reason and the usage chunk's usage."""
    text, finish, usage = "", None, None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        usage = chunk.usage or usage
    return text, finish, usage
