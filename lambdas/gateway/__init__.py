"""The unified model gateway: one ASGI app (Poe protocol + OpenAI-compatible API) in front of Amazon Bedrock."""
