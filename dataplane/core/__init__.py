"""The pure core of the request path: given the runtime, the request facts, the counters and the clocks, decide.

Nothing here imports asyncio, aiohttp or grpc, waits, or touches a disk; every branch is testable without an
event loop (tests/dataplane/test_decide.py is the model). In request order:

- ``decide``: ``RequestFacts`` → ``RoutePlan`` or ``ApiError``: authenticate, validate, authorize, plan.
- ``validate``: the chat completion body: fields that matter, keys nobody may send.
- ``health``: deployments' passive health (breakers, latency), read by the planner, written by the attempts.
- ``attribution``: which user, project and tags a request is accounted to.
- ``content`` and ``pii``: what the log keeps of content, and redaction before the provider.
- ``gate``: the admit/settle seam (``Gate``, ``Admission``, ``Refusal``); ``limits/`` the real gate
  (``limits_gate``) over ``ratelimit`` (token buckets at this data plane's share) and ``budget`` (reservations
  from leased grants), reserving ``cost_bound``'s worst case.
- ``accounting``: usage, integer cost, the charging rules for answers without usage, the ``Outcome``.
"""
