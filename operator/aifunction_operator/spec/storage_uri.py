"""Classify a model repository URI: read by Triton, mounted from a PVC, fetched by the storage initializer, in the image, or local."""

from __future__ import annotations

from .errors import FieldError
from .model import RepositorySource, SourceKind
from .patterns import go_regex

DIRECT_SCHEMES = ("s3", "gs", "as")
INITIALIZER_SCHEMES = ("http", "https", "hf", "hdfs", "webhdfs", "modelscope")
_DNS_SUBDOMAIN = go_regex(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def classify(uri: str, path: str = "spec.model.repository") -> RepositorySource | FieldError:
    """The repository's source, or an error naming `path` when the URI cannot be used."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return RepositorySource(SourceKind.LOCAL, uri, path=uri)
    if scheme in DIRECT_SCHEMES:
        return RepositorySource(SourceKind.DIRECT, uri)
    if scheme in INITIALIZER_SCHEMES:
        return RepositorySource(SourceKind.INITIALIZER, uri)
    if scheme == "pvc":
        claim, _, sub_path = rest.partition("/")
        if not _DNS_SUBDOMAIN.match(claim) or len(claim) > 253:
            return FieldError(path, f"pvc:// needs a claim name that is a DNS subdomain, got {claim!r} (form: pvc://<claim>/<path>)")
        if ".." in sub_path.split("/"):
            return FieldError(path, "pvc:// path must not contain '..'")
        return RepositorySource(SourceKind.PVC, uri, claim=claim, sub_path=sub_path.strip("/"))
    if scheme == "file":
        if not rest.startswith("/"):
            return FieldError(path, f"file:// needs an absolute path inside the image, e.g. file:///models, got {uri!r}")
        return RepositorySource(SourceKind.IMAGE, uri, path=rest)
    return FieldError(path, f"unsupported URI scheme {scheme + '://'!r}")
