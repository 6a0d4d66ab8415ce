"""Authentication: AWS SigV4 as the service checks it (``verify_signature``, recomputed with botocore's
``SigV4Auth`` over exactly the headers the request signed), the ``Authorization`` header's parts
(``parse_authorization``), and why a request is refused (``Refusal``)."""

from __future__ import annotations

import datetime
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.compat import HTTPHeaders  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]

SERVICE = "bedrock"
MAX_SKEW_S = 300
SIGNATURE_MISMATCH = ("The request signature we calculated does not match the signature you provided. Check your AWS "
                      "Secret Access Key and signing method. Consult the service documentation for details.")
INVALID_TOKEN = "The security token included in the request is invalid."
_SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class Refusal:
    """Why the service refuses a request: the ``x-amzn-ErrorType`` it answers and the ``message``."""

    error_type: str
    message: str


class _ServerSigV4(SigV4Auth):  # type: ignore[misc]
    """botocore's SigV4 over exactly the headers the client listed in ``SignedHeaders`` (as AWS computes it)."""

    def __init__(self, credentials: Any, region: str, signed: list[str]) -> None:
        super().__init__(credentials, SERVICE, region)
        self._signed = set(signed)

    def headers_to_sign(self, request: Any) -> Any:
        header_map = HTTPHeaders()
        for name, value in request.headers.items():
            if name.lower() in self._signed:
                header_map[name.lower()] = value
        return header_map


def parse_authorization(value: str) -> tuple[str, dict[str, str]]:
    """The algorithm of an ``Authorization`` header and its ``Credential``/``SignedHeaders``/``Signature`` fields."""
    algorithm, _, rest = value.strip().partition(" ")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, field_value = part.strip().partition("=")
        if sep:
            fields[name.strip()] = field_value.strip()
    return algorithm, fields


def verify_signature(method: str, url: str, headers: Iterable[tuple[str, str]], body: bytes, *, access_key: str,
                     secret_key: str, session_token: str | None, region: str, now: float,
                     token_expired: bool = False) -> Refusal | None:
    """Why AWS would refuse this request's SigV4 signature (``url`` as sent, path still percent-encoded), or None."""
    pairs = list(headers)
    lower: dict[str, str] = {}
    for name, value in pairs:
        lower.setdefault(name.lower(), value)
    authorization = lower.get("authorization")
    if not authorization:
        return Refusal("MissingAuthenticationTokenException", "Missing Authentication Token")
    algorithm, fields = parse_authorization(authorization)
    if algorithm != "AWS4-HMAC-SHA256":
        return Refusal("IncompleteSignatureException", f"Unsupported AWS 'algorithm': '{algorithm}'")
    missing = [f"Authorization header requires '{name}' parameter." for name in ("Credential", "Signature",
                                                                                 "SignedHeaders")
               if name not in fields]
    amz_date = lower.get("x-amz-date")
    if amz_date is None:
        missing.append("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    if missing:
        return Refusal("IncompleteSignatureException", " ".join(missing) + f" Authorization={authorization}")
    assert amz_date is not None
    scope = fields["Credential"].split("/")
    if len(scope) != 5:
        return Refusal("IncompleteSignatureException",
                           f"Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/"
                           f"term, got '{fields['Credential']}'")
    key, scope_date, scope_region, scope_service, terminator = scope
    if key != access_key:
        return Refusal("UnrecognizedClientException", INVALID_TOKEN)
    try:
        signed_at = datetime.datetime.strptime(amz_date, _SIGV4_TIMESTAMP).replace(tzinfo=datetime.UTC)
    except ValueError:
        return Refusal("IncompleteSignatureException", f"Date must be in ISO-8601 'basic format'. Got "
                                                           f"'{amz_date}'. See http://en.wikipedia.org/wiki/ISO_8601")
    if scope_date != amz_date[:8]:
        return Refusal("InvalidSignatureException",
                           f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from "
                           f"HTTP: '{scope_date}' != '{amz_date[:8]}', from '{amz_date}'.")
    if scope_region != region:
        return Refusal("InvalidSignatureException", "Credential should be scoped to a valid region. ")
    if scope_service != SERVICE:
        return Refusal("InvalidSignatureException", f"Credential should be scoped to correct service: "
                                                        f"'{SERVICE}'. ")
    if terminator != "aws4_request":
        return Refusal("InvalidSignatureException", f"Credential should be scoped with a valid terminator: "
                                                        f"'aws4_request', not '{terminator}'. ")
    clock = datetime.datetime.fromtimestamp(now, datetime.UTC)
    skew = datetime.timedelta(seconds=MAX_SKEW_S)

    def stamp(moment: datetime.datetime) -> str:
        return moment.strftime(_SIGV4_TIMESTAMP)

    if signed_at < clock - skew:
        return Refusal("InvalidSignatureException", f"Signature expired: {amz_date} is now earlier than "
                                                        f"{stamp(clock - skew)} ({stamp(clock)} - 5 min.)")
    if signed_at > clock + skew:
        return Refusal("InvalidSignatureException", f"Signature not yet current: {amz_date} is still later than "
                                                        f"{stamp(clock + skew)} ({stamp(clock)} + 5 min.)")
    token = lower.get("x-amz-security-token")
    if token != session_token:
        return Refusal("UnrecognizedClientException", INVALID_TOKEN)
    if token is not None and token_expired:
        return Refusal("ExpiredTokenException", "The security token included in the request is expired")
    signed = [name.strip().lower() for name in fields["SignedHeaders"].split(";")]
    if "host" not in signed:
        return Refusal("InvalidSignatureException",
                           "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
    if "x-amz-date" not in signed:
        return Refusal("InvalidSignatureException", "'X-Amz-Date' must be a 'SignedHeader' in the AWS "
                                                        "Authorization.")
    content_sha = lower.get("x-amz-content-sha256")
    if content_sha is not None and content_sha != hashlib.sha256(body).hexdigest():
        return Refusal("InvalidSignatureException",
                           "The provided 'x-amz-content-sha256' header does not match what was computed.")
    request = AWSRequest(method=method, url=url, data=body)
    for name, value in pairs:
        if name.lower() in signed:
            request.headers[name] = value
    request.context["timestamp"] = amz_date
    signer = _ServerSigV4(Credentials(access_key, secret_key, session_token), region, signed)
    canonical: str = signer.canonical_request(request)
    string_to_sign: str = signer.string_to_sign(request, canonical)
    expected: str = signer.signature(string_to_sign, request)
    if not hmac.compare_digest(expected, fields["Signature"]):
        return Refusal("InvalidSignatureException",
                           f"{SIGNATURE_MISMATCH}\n\nThe Canonical String for this request should have been\n"
                           f"'{canonical}'\n\nThe String-to-Sign should have been\n'{string_to_sign}'\n")
    return None
