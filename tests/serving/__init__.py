"""Tests against a real tritonserver: the server itself (triton/), `aifn run` (local/) and the handler runtime (handler/)."""
