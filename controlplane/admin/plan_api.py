"""``POST /admin/v1/plan``: what the data planes of every region would receive if these documents were applied.

Body: ``{"documents": [{"source": "policies/a.yaml#2", "document": {...}}]}``, as ``/admin/v1/apply`` takes them.
The documents are validated exactly as an apply would (422 ``invalid_policy`` with every problem, naming each
document's ``source``); nothing is written. The answer is ``controlplane.policy.plan.PolicyPlan.to_json()``.
Regions compiled: every region the current or the proposed policy mentions, and every region a data plane has
asked for (those get an empty snapshot when no tenant allows them).

Compiling twice costs seconds for a policy of 100,000 keys, so it runs on a worker thread, off the event loop
that serves the discovery streams. Errors become HTTP answers in ``controlplane.admin.api``'s middleware.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol

import orjson
from aiohttp import web

from controlplane.errors import InvalidPolicy, InvalidRequest
from controlplane.policy import plan
from controlplane.policy.engine import Document
from controlplane.policy.repository import Repository


class RegionSource(Protocol):
    """The regions data planes run in (the publisher's), so a plan covers regions no policy names any more."""

    def __call__(self) -> Iterable[str]: ...


PLAN_REPOSITORY = web.AppKey("plan_repository", Repository)
PLAN_REGIONS = web.AppKey("plan_regions", RegionSource)


def add_plan_routes(app: web.Application, repository: Repository, regions: RegionSource) -> None:
    app[PLAN_REPOSITORY] = repository
    app[PLAN_REGIONS] = regions
    app.router.add_post("/admin/v1/plan", _plan)


def documents_of(body: object) -> list[Document]:
    """The ``documents`` of a request body, as ``/admin/v1/apply`` reads them; ``InvalidRequest`` otherwise."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    raw = body.get("documents")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidRequest("'documents' must be of type list")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or "document" not in item:
            raise InvalidRequest(f"documents[{i}] must be an object with 'source' and 'document'")
        out.append(Document(str(item.get("source") or f"documents[{i}]"), item["document"]))
    return out


async def proposal_for(request: web.Request) -> plan.Proposal:
    """The request's documents as a ``Proposal`` (current and proposed snapshots); ``InvalidPolicy`` when an
    apply of them would be refused. The seam a replay of recorded traffic builds on."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as e:
        raise InvalidRequest(f"the body is not valid JSON: {e}") from e
    documents = documents_of(body)
    state = await request.app[PLAN_REPOSITORY].state()
    regions = sorted(request.app[PLAN_REGIONS]())
    proposal = await asyncio.to_thread(plan.propose, state, documents, regions)
    if not isinstance(proposal, plan.Proposal):
        raise InvalidPolicy(proposal)
    return proposal


async def _plan(request: web.Request) -> web.Response:
    proposal = await proposal_for(request)
    answer = await asyncio.to_thread(lambda: plan.plan_of(proposal).to_json())
    return web.Response(body=orjson.dumps(answer), content_type="application/json")
