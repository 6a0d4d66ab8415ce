"""The client connection, before a request reaches a route: ``edge`` (aiohttp's connection protocol with the edge
limits, and the fast path's entry), ``edge_runner`` (the server making those connections), ``whole_request`` (a
request read whole, and the fast path that serves it, streams too), ``overload`` (the in-flight limit that follows
the event loop's lag), ``request_body`` (reading a body on aiohttp's path)."""
