"""aifn: serverless AI functions on Kubernetes (Knative + NVIDIA Triton), and on one machine."""

__version__ = "0.1.0"
