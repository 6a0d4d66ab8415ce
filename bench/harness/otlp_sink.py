"""An OTLP/HTTP trace receiver that keeps nothing: what the data plane exports under ``--trace-sampling`` goes
somewhere real (an HTTP server answering the exporter's POSTs as a collector would) without costing the bench a
collector. ``python -m bench.harness.otlp_sink --port P``; ``GET /stats`` answers how many export requests and
spans arrived (decoded with opentelemetry-proto), so a run can show its traces were exported.
"""

from __future__ import annotations

import argparse

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

STATS = web.AppKey("stats", dict[str, int])


async def export(request: web.Request) -> web.Response:
    message = ExportTraceServiceRequest.FromString(await request.read())
    stats = request.app[STATS]
    stats["requests"] += 1
    stats["spans"] += sum(len(s.spans) for r in message.resource_spans for s in r.scope_spans)
    return web.Response(body=ExportTraceServiceResponse().SerializeToString(), content_type="application/x-protobuf")


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATS])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATS] = {"requests": 0, "spans": 0}
    app.router.add_post("/v1/traces", export)
    app.router.add_get("/stats", stats)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
