"""aifn-ingress: the KIngress implementation of `make cluster`, Knative's networking layer on Envoy.

Knative Serving hands every Route to a networking layer as a KIngress
(`networking.internal.knative.dev/v1alpha1`, class `aifn.ingress.networking.knative.dev`). This
package turns those into Envoy configuration, the way Kourier does, with Python deciding and Envoy
forwarding:

- `kingress` (pure): parse a KIngress, Knative's probe rules and hash, the hosts a rule answers to;
- `envoy` (pure): the route tables and clusters for the external and cluster-local listeners;
- `status` (pure): the KIngress status (load balancers, conditions);
- `controller` (I/O): watch KIngresses and Services, write Envoy's file-based xDS, wait until
  Envoy serves the new version, then report the KIngresses Ready.

It is the networking layer of the local cluster (proven with Knative's ingress conformance suite),
not a replacement for Kourier or Istio in production.
"""
