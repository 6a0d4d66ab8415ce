"""The models the fake serves (``MODELS``) and the foundation model a model id names (``base_model_id``: an ARN's
resource, without a geographic inference-profile prefix, ``GEO_PREFIXES``)."""

from __future__ import annotations

MODELS = frozenset({
    "anthropic.claude-3-haiku-20240307-v1:0", "anthropic.claude-3-5-haiku-20241022-v1:0",
    "anthropic.claude-3-5-sonnet-20240620-v1:0", "anthropic.claude-3-5-sonnet-20241022-v2:0",
    "anthropic.claude-3-7-sonnet-20250219-v1:0", "anthropic.claude-sonnet-4-20250514-v1:0",
    "amazon.nova-micro-v1:0", "amazon.nova-lite-v1:0", "amazon.nova-pro-v1:0", "meta.llama3-1-8b-instruct-v1:0",
    "mistral.mistral-large-2407-v1:0", "amazon.titan-embed-text-v1", "amazon.titan-embed-text-v2:0",
    "cohere.embed-english-v3", "cohere.embed-multilingual-v3"})
GEO_PREFIXES = frozenset({"us", "eu", "apac", "us-gov", "global", "jp", "au", "ca"})


def base_model_id(model_id: str) -> str:
    """The foundation model a model id names: the resource of an ARN (``…:foundation-model/<id>``,
    ``…:inference-profile/<id>``), without a geographic inference-profile prefix (``eu.``, ``us.``, ``global.``…)."""
    if model_id.startswith("arn:"):
        resource = model_id.split(":", 5)[-1]
        model_id = resource.split("/", 1)[-1]
    prefix, _, rest = model_id.partition(".")
    return rest if prefix in GEO_PREFIXES and "." in rest else model_id
