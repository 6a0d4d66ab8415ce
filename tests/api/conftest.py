"""Fixtures of the API-surface end-to-end tests (``test_responses_e2e.py``, ``test_surfaces_e2e.py``): ``world``,
one real data plane (``surfaces_world.py``) in front of two fake OpenAI servers (the second the backup of the
``pair`` route) and the fake Anthropic server; ``client``, an ``openai.AsyncOpenAI`` on that data plane, closed at
the end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest

from tests.api.surfaces_world import (
    ANTHROPIC_ENV,
    ANTHROPIC_KEY,
    FAKE_DIMENSIONS,
    OPENAI_ENV,
    OPENAI_TOKEN,
    World,
    data_plane,
    snapshot,
)
from tests.fakes.anthropic_upstream import fake_anthropic
from tests.fakes.openai_upstream import fake_openai
from tollway.keyformat import generate_key


@pytest.fixture
async def world(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    """The data plane and the fakes behind it (``surfaces_world.py``), stopped at the end."""
    # Upstream credentials are read from the environment when the snapshot is installed.
    monkeypatch.setenv(OPENAI_ENV, OPENAI_TOKEN)
    monkeypatch.setenv(ANTHROPIC_ENV, ANTHROPIC_KEY)
    key = generate_key()
    async with fake_openai(OPENAI_TOKEN) as fake, fake_anthropic(ANTHROPIC_KEY) as claude, \
            fake_openai(OPENAI_TOKEN) as backup:
        fake.embedding_dimensions = FAKE_DIMENSIONS
        async with data_plane(snapshot(key, fake.base_url, claude.base_url, backup.base_url)) as (url, spool):
            yield World(url, key, fake, claude, spool, backup)


@pytest.fixture
async def client(world: World) -> AsyncIterator[openai.AsyncOpenAI]:
    """An ``openai.AsyncOpenAI`` on ``world``'s data plane, closed at the end."""
    c = world.async_client()
    try:
        yield c
    finally:
        await c.close()
