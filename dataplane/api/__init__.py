"""The client-facing side: aiohttp handlers, one module per inbound dialect, one request path.

- ``app``: ``create_app`` wires the typed state (``appstate``) and the routes.
- ``pipeline``: ``serve(request, dialect)``, the one request path every dialect runs (decide, admit, attempt,
  respond, settle, record), and the ``Dialect`` protocol: what differs between the APIs clients speak.
- ``openai``: chat completions (the hub format: answers pass through) and ``/v1/models``.
- ``anthropic``: the Messages API (translated to and from the hub by ``dataplane.translate``).
- ``streaming``: relaying upstream SSE to the client in the dialect's format, noting usage on the way.
- ``ops``: ``/healthz``, ``/readyz``, ``/healthz/deployments``.
"""
