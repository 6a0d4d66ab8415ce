"""The data plane: a stateless aiohttp proxy serving the OpenAI and Anthropic APIs, enforcing its last snapshot.

Read this first. One request, in order (shared/DESIGN.md §6), step → module:

0. **connection**: ``api.connection``: ``edge`` (the connection edge, served by ``edge_runner``) bounds the head
   and sheds overload; a whole inference request it serves itself (``whole_request``, the fast path), anything
   else goes through aiohttp's server (bodies read by ``request_body``).
1. **parse**: ``api.app`` routes it to its dialect's handler: ``api.openai`` (``/v1/chat/completions``,
   ``/v1/models``) or ``api.anthropic`` (``/v1/messages``, translated by ``translate.anthropic_to_hub``);
   both run the one path of ``api.pipeline.serve``, which reads the body, then the runtime (``snapshot.holder``),
   once, and gathers the ``core.decide.RequestFacts``.
2. **authenticate → validate → authorize → plan**: ``core.decide.decide`` (pure): the key by hash
   (``snapshot.runtime`` key table), the body (``core.validate``), the route and region, the capable candidates
   ordered by strategy and health (``core.health``).
3. **attribute**: ``core.attribution`` (user, project, tags); redaction before the provider: ``core.content``.
4. **admit**: ``core.gate`` (the seam) → ``core.limits_gate``: rate limits (``core.ratelimit``), then the budget
   reservation (``core.budget``) of the worst case (``core.cost_bound``).
5. **attempt**: ``upstream.attempt`` tries the candidates with failover; ``upstream.adapters`` (one per provider
   schema; ``translate.hub_to_anthropic`` for Anthropic) over ``upstream.client`` / ``upstream.connection``
   (a lean keep-alive HTTP/1.1 client) and ``upstream.sse``.
6. **respond**: JSON in ``api.pipeline``, or streamed by ``api.streaming`` in the dialect's ``StreamFormat``.
7. **settle**: ``core.accounting`` (usage, cost, what an answer without usage is charged) → the gate.
8. **record**: ``record.records``: the usage record (``record.usage_record``) into the spool (``record.spool``),
   metrics (``record.metrics``), the request log (``record.request_log``).

Around it, in the background (``sync``): ``sync.discovery`` receives snapshots (prepared off the loop, adopted
on it: ``snapshot.holder``), persists them (``snapshot.disk_cache``), ACKs or NACKs; ``sync.leases`` keeps
budget grants and rate shares; ``sync.usage_shipper`` ships the spool; ``sync.health_report`` reports health;
``upstream.probe`` runs the active health checks. ``serve.DataPlane`` starts and stops all of it in one place,
in the process ``main`` runs (``gatectl dataplane serve`` becomes it; ``workers`` supervises several);
``settings`` is read once; ``errors`` is the error tree and the one place errors become OpenAI JSON.

Layering (enforced by tests/core/test_layering.py): ``snapshot`` ← ``core`` ← ``upstream`` ← ``api``;
``translate`` and ``core`` are pure (no asyncio, aiohttp or grpc); grpc only in ``sync`` and ``serve``.
"""

from dataplane.compiled import install

install()  # the request path's modules compiled by mypyc, when built and matching their sources (``compiled``)
