"""The built-in ``mock`` provider (``gatectl up``'s demo, tests, benches): answers made up locally, no network.

- ``adapter``: the adapter itself, every surface, JSON and streams;
- ``model``: the deterministic model that writes the answers (``text``: its words; ``schema``: answers that follow
  a JSON schema or a tool's parameters);
- ``surfaces``: embeddings, legacy completions, moderations and token counts.
"""
