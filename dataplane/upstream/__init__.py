"""The upstream side of the request path: attempt a plan's candidates, speak each provider's wire format.

- ``attempt``: candidates in order with failover before the first byte, the retry budget, health reports.
- ``adapters``: one adapter per provider schema behind one ``Adapter.send`` (``openai``, ``azure``,
  ``anthropic``, ``bedrock``, ``google``: the Gemini API and Vertex AI, ``mock``); ``adapters.wire`` is what the
  HTTP ones share, including the one boundary (``map_failures``) where the client's exceptions become
  ``UpstreamFailure``.
- ``client`` and ``connection``: a lean keep-alive HTTP/1.1 client, pooled per origin, parsing answers as their
  bytes arrive; ``sse``: incremental server-sent-event parsing.
- ``deadline`` and ``alarms``: the request path's timeouts, one loop timer per 5 ms tick for all of them.
- ``probe``: the active health checks, one lightweight request per provider on an interval.
- ``credentials``: whether this data plane holds each provider's credential, resolved locally as a snapshot
  installs (a ``SnapshotHolder`` companion), so ``Health`` marks the ones without it ``no-credential`` at once.
"""
