"""AWS's errors as the fake answers them: the exception of each ``fail_status`` (``FAIL_ERRORS``) and AWS's
messages (``ERROR_MESSAGES``), the HTTP status the service model gives an error shape (``error_status``), and the
rest-json error answer (``aws_error``)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.bedrock_upstream.validation import service_model

FAIL_ERRORS = {429: "ThrottlingException", 400: "ValidationException", 404: "ResourceNotFoundException",
               424: "ModelErrorException", 500: "InternalServerException", 503: "ServiceUnavailableException",
               408: "ModelTimeoutException", 403: "AccessDeniedException"}
ERROR_MESSAGES = {
    "ThrottlingException": "Too many requests, please wait before trying again.",
    "ValidationException": "Malformed input request, please reformat your input and try again.",
    "ResourceNotFoundException": "Could not resolve the foundation model from the provided model identifier.",
    "ModelErrorException": "The system encountered an unexpected error during processing. Try your request again.",
    "InternalServerException": "The system encountered an unexpected error during processing. Try your request again.",
    "ServiceUnavailableException": "Bedrock is unable to process your request.",
    "ModelTimeoutException": "Model has timed out in processing the request. Try your request again.",
    "AccessDeniedException": "You don't have access to the model with the specified model ID.",
    "ModelNotReadyException": "Model is not ready to serve inference requests. Try again later.",
    "ServiceQuotaExceededException": "Your request exceeds the service quota for your account.",
    "ModelStreamErrorException": "The system encountered an unexpected error during processing. Try your request "
                                 "again.",
}


def error_status(error_type: str) -> int:
    """The HTTP status the service model gives an error shape (400 for one it does not know)."""
    shape = service_model().shape_for(error_type) if error_type in service_model().shape_names else None
    if shape is None:
        return 400
    return int(shape.metadata.get("error", {}).get("httpStatusCode", 400))


def aws_error(error_type: str, message: str, status: int | None = None, **extra: Any) -> web.Response:
    """A rest-json error: ``x-amzn-ErrorType`` and ``x-amzn-RequestId`` headers, ``{"message", ...}`` body."""
    return web.Response(status=status or error_status(error_type), body=orjson.dumps({"message": message, **extra}),
                        content_type="application/json",
                        headers={"x-amzn-ErrorType": error_type, "x-amzn-RequestId": str(uuid.uuid4())})


def _request_id() -> dict[str, str]:
    return {"x-amzn-RequestId": str(uuid.uuid4())}
