"""One signed webhook delivery, and where its secret comes from.

A delivery is ``POST <url>`` with the event's JSON body and::

    Content-Type: application/json
    X-Tollway-Event: <kind>
    X-Tollway-Event-Id: <event id>       (also Idempotency-Key: the same at every retry of the event)
    X-Tollway-Timestamp: <unix seconds>  (of this attempt)
    X-Tollway-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" under the webhook's secret>

A receiver recomputes the HMAC over the timestamp header, a dot and the raw body, compares in constant time,
rejects timestamps too far from its clock (replays), and deduplicates on the event id (deliveries are at least
once). Any 2xx is a delivery; anything else, or no answer within the timeout, is a failed attempt.

The secret is named by policy, never held in it: ``secretFile`` (read at each attempt, so a rotated file applies
at once), else the control plane's environment variable ``TOLLWAY_WEBHOOK_SECRET_<NAME>``. Neither the secret nor
the URL (which may carry a token of its own) appears in an error text: errors name the webhook and the host.
Foreign exceptions (aiohttp, OS errors) are translated here into the error text of a failed attempt.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from controlplane.policy.resources import Webhook

SIGNATURE_HEADER = "X-Tollway-Signature"
TIMESTAMP_HEADER = "X-Tollway-Timestamp"
EVENT_ID_HEADER = "X-Tollway-Event-Id"
EVENT_HEADER = "X-Tollway-Event"
SECRET_ENV_PREFIX = "TOLLWAY_WEBHOOK_SECRET_"


def secret_env_name(webhook: str) -> str:
    """``TOLLWAY_WEBHOOK_SECRET_<NAME>``: the webhook's name upper-cased, ``-`` and ``.`` as ``_``."""
    return SECRET_ENV_PREFIX + re.sub(r"[^A-Z0-9_]", "_", webhook.upper())


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Tollway-Signature`` value of a body sent at ``timestamp``."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def read_secret(hook: Webhook, environ: Mapping[str, str]) -> bytes | str:
    """The webhook's HMAC secret, or why there is none (a message naming where it was looked for)."""
    if hook.secret_file is not None:
        try:
            secret = Path(hook.secret_file).read_bytes().strip()
        except OSError as e:
            return f"cannot read the secret file of webhook {hook.name!r}: {e.strerror or type(e).__name__}"
        return secret or f"the secret file of webhook {hook.name!r} is empty"
    env = secret_env_name(hook.name)
    value = environ.get(env, "").strip()
    return value.encode() if value else f"no HMAC secret for webhook {hook.name!r}: set {env} or secretFile"


def host_of(url: str) -> str:
    return urlsplit(url).netloc or "?"


async def post(session: aiohttp.ClientSession, hook: Webhook, secret: bytes, event_id: str, kind: str, body: bytes,
               now: float, timeout_s: float) -> str | None:
    """One attempt: None when the webhook answered 2xx, else what went wrong (safe to store and show)."""
    timestamp = str(int(now))
    headers = {"Content-Type": "application/json", EVENT_HEADER: kind, EVENT_ID_HEADER: event_id,
               "Idempotency-Key": event_id, TIMESTAMP_HEADER: timestamp,
               SIGNATURE_HEADER: sign(secret, timestamp, body)}
    try:
        async with session.post(hook.url, data=body, headers=headers, allow_redirects=False,
                                timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            await resp.read()
            if 200 <= resp.status < 300:
                return None
            return f"{host_of(hook.url)} answered {resp.status}"
    except TimeoutError:
        return f"{host_of(hook.url)} did not answer within {timeout_s:g} s"
    except (aiohttp.ClientError, OSError) as e:
        return f"{host_of(hook.url)} unreachable ({type(e).__name__})"
