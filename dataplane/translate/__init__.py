"""Translations between the dialects clients and providers speak and the one hub format. Pure functions.

The hub is OpenAI chat completions (shared/DESIGN.md §7); each inbound dialect translates to it, each provider
adapter from it, and the same dialect in and out passes through untranslated. One module per direction:

- ``anthropic_to_hub``: an Anthropic Messages client's request in, and the answer (message, SSE events,
  errors) back out in Anthropic's shapes.
- ``hub_to_anthropic``: the gateway calling Anthropic's Messages API for a hub request, and the answer back.
- ``anthropic_common``: what both Anthropic directions share (stop-reason tables, what cannot be translated).
- ``hub_to_gemini``: the gateway calling Google's Gemini models (the Gemini API and Vertex AI) for a hub request;
  ``gemini_to_hub`` the answers and streams back; ``gemini_schema`` JSON Schema to Gemini's; ``gemini_embeddings``
  batchEmbedContents, Vertex's predict and countTokens.
- ``hub_to_bedrock``: the gateway calling AWS Bedrock (Converse, Anthropic's body on InvokeModel) for a hub
  request; ``bedrock_to_hub`` the Converse answers and streams back; ``bedrock_embeddings`` Titan and Cohere.
"""
