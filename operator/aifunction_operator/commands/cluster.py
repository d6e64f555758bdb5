"""The command line's connection to a cluster, chosen as kubectl chooses it, and the few calls deploy and delete make.

`--kubeconfig` (else $KUBECONFIG, else ~/.kube/config), `--context` (else the current one) and
`--namespace` (else the file's, else the context's, else `default`). Writes are server-side applies
as `aifn-cli`. The Kubernetes client is imported only once a command connects.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..constants import API_VERSION, KIND, PLURAL

FIELD_MANAGER = "aifn-cli"
REVISION_LABEL = "serving.knative.dev/revision"
APPLY_PATCH = "application/apply-patch+yaml"


class ClusterError(Exception):
    """No cluster to talk to, or a request it refused; the message is ready for the terminal."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    """`-n/--namespace`, `--kubeconfig` and `--context`, as kubectl has them."""
    parser.add_argument("-n", "--namespace", help="the namespace (default: the file's, else the context's, else default)")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")


def function_path(namespace: str, name: str | None = None) -> str:
    return f"/apis/{API_VERSION}/namespaces/{namespace}/{PLURAL}" + (f"/{name}" if name else "")


class Cluster:
    """A connected client and the namespace its kubeconfig context names (None: unset)."""

    def __init__(self, kube: Any, context_namespace: str | None) -> None:
        self.kube = kube  # controller.kube_client.KubeClient
        self.context_namespace = context_namespace

    @classmethod
    def connect(cls, args: argparse.Namespace) -> Cluster:
        from kubernetes import client, config  # noqa: PLC0415 - keep `aifn --help` light
        from kubernetes.config import ConfigException  # noqa: PLC0415

        from ..controller.kube_client import KubeClient  # noqa: PLC0415

        configuration = client.Configuration()
        try:
            config.load_kube_config(config_file=args.kubeconfig, context=args.context, client_configuration=configuration)
            contexts, current = config.list_kube_config_contexts(config_file=args.kubeconfig)
        except (ConfigException, OSError) as exc:
            raise ClusterError(f"no cluster to talk to: {exc} (set --kubeconfig or KUBECONFIG)") from None
        chosen = next((c for c in contexts if c.get("name") == args.context), current) if args.context else current
        return cls(KubeClient(client.ApiClient(configuration)), ((chosen or {}).get("context") or {}).get("namespace"))

    def namespace_for(self, args: argparse.Namespace, written: str | None) -> str:
        """The namespace of a function: --namespace, else the file's, else the context's; the first two must agree."""
        if args.namespace and written and args.namespace != written:
            raise ClusterError(f"the namespace in the file ({written}) does not match --namespace {args.namespace}")
        return str(args.namespace or written or self.context_namespace or "default")

    def get_function(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The function, or None when there is none of that name."""
        try:
            return self._request("GET", function_path(namespace, name))
        except ClusterError as exc:
            if exc.status == 404:
                return None
            raise

    def apply_function(self, body: dict[str, Any], *, force: bool) -> dict[str, Any]:
        """Server-side apply as `aifn-cli`; a field owned by another manager is a conflict unless `force`."""
        meta = body["metadata"]
        query = {"fieldManager": FIELD_MANAGER, "force": "true" if force else "false"}
        return self._request("PATCH", function_path(meta["namespace"], meta["name"]), body=body, query=query, content_type=APPLY_PATCH)

    def delete_function(self, namespace: str, name: str, *, foreground: bool) -> bool:
        """Delete a function (foreground: it goes once its Knative Service has); False when there was none."""
        options = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Foreground" if foreground else "Background"}
        try:
            self._request("DELETE", function_path(namespace, name), body=options)
        except ClusterError as exc:
            if exc.status == 404 and f'{PLURAL}.' in str(exc):
                return False
            raise
        return True

    def revision_pods(self, namespace: str, revision: str) -> list[dict[str, Any]]:
        """The pods of one Knative revision; [] when pods cannot be listed (RBAC may not let this user)."""
        try:
            listing = self._request("GET", f"/api/v1/namespaces/{namespace}/pods", query={"labelSelector": f"{REVISION_LABEL}={revision}"})
        except ClusterError:
            return []
        return list(listing.get("items") or [])

    def events(self, namespace: str) -> list[dict[str, Any]]:
        """The namespace's core Events; [] when they cannot be listed."""
        try:
            return list(self._request("GET", f"/api/v1/namespaces/{namespace}/events").get("items") or [])
        except ClusterError:
            return []

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        from ..controller.kube_client import ApiError  # noqa: PLC0415

        try:
            return self.kube.request(method, path, **kwargs)
        except ApiError as exc:
            raise ClusterError(_explain(exc.status, exc.message, str(exc)), exc.status) from None


def _explain(status: int, message: str, full: str) -> str:
    """The server's message, with what to do when the AIFunction API is missing or a field is owned by someone else."""
    if status == 404 and "the server could not find the requested resource" in message:
        return f"{message}: the cluster does not serve {KIND} ({PLURAL}.{API_VERSION}); install the operator's chart, or `aifn crd | kubectl apply -f -`"
    if status == 409:
        return f"{message}\n(another field manager owns these fields; --force-conflicts takes them over)"
    return full
