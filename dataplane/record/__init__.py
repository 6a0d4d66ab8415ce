"""The record step: what the data plane keeps of each request, written off the request path.

- ``records``: ``Records.served`` / ``refused``: the usage record, metrics and request log, in that order.
- ``usage_record``: the usage record of one request (``usage_fields``: identifiers, tokens, cost, latencies).
- ``spool``: the append-only local spool usage records go to before they are shipped.
- ``request_log``: one JSON line per request, by a writer thread, content per the tenant's policy.
- ``metrics``: the Prometheus metrics at ``/metrics``.
- ``trace_context``: one request's W3C trace context and the facts its spans are built from (no SDK).
- ``tracing``: OpenTelemetry spans (GenAI semantic conventions 1.37.0), built at record time, exported by OTLP/HTTP.
"""
