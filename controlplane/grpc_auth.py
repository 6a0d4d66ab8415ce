"""Data planes authenticate to every gRPC service of the control plane the same way: a bearer token in the
call's metadata (``authorization: Bearer <data-plane token>``), compared in constant time. mTLS, when
configured, is checked by the server's credentials before any of this runs."""

from __future__ import annotations

import hmac

import grpc


def bearer(token: str) -> bytes:
    """What a call's ``authorization`` metadata must equal."""
    return f"Bearer {token}".encode()


async def require_token(context: grpc.aio.ServicerContext, expected: bytes) -> None:  # type: ignore[type-arg]
    """Return if the call carries ``expected``; otherwise end it with UNAUTHENTICATED (this raises)."""
    given = dict(context.invocation_metadata() or ()).get("authorization", "")
    given_bytes = given.encode() if isinstance(given, str) else bytes(given)
    if not hmac.compare_digest(given_bytes, expected):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong data-plane token")
