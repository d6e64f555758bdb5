"""Handlers shipped with aifn: name one in `spec.handler.entrypoint`, with no code to copy.

- `openai_embeddings:lambda_handler`: OpenAI-compatible `POST /v1/embeddings` and
  `GET /v1/models` for a sentence-embedding model (`model_repo/minilm`).
"""
