{{/* Rules the operator needs wherever functions live (a ClusterRole in cluster mode, a Role per
watched namespace in namespaced mode). */}}
{{- define "aifn.functionRules" -}}
# The rules docs/operator.md lists, nothing more: the operator only gets, lists, watches,
# server-side applies (create/patch) and merge-patches; Knative Services go with their
# AIFunction through ownerReferences, so no delete on them (only on children a function
# stops wanting: handler ConfigMaps, PingSources, Triggers).
# AIFunctions: kopf watches them and patches its finalizer and progress annotations.
- apiGroups: ["aifn.dev"]
  resources: ["aifunctions"]
  verbs: ["get", "list", "watch", "patch"]
# Status merge-patches.
- apiGroups: ["aifn.dev"]
  resources: ["aifunctions/status"]
  verbs: ["patch"]
# The Knative Service each function renders into: server-side apply and the drift watch.
- apiGroups: ["serving.knative.dev"]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Revisions of functions' Services: scheduled pre-warm writes only their min-scale annotation.
- apiGroups: ["serving.knative.dev"]
  resources: ["revisions"]
  verbs: ["get", "list", "watch", "patch"]
# Pods of functions: tells "waiting for a GPU node" from other pending states.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# Events about handler progress and errors (kopf's and ours).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# The ConfigMap holding a function's inline handler code: server-side apply, the drift
# watch (label-selected) and pruning when the code moves to a user's ConfigMap. No get:
# the operator lists by label, and by name before it writes (to leave others' objects alone).
# RBAC cannot limit writes to the operator's own objects; the ValidatingAdmissionPolicy
# (admissionpolicy.yaml, rbac.ownedObjectsPolicy) does. Secrets stay out of reach.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# spec.triggers: a PingSource per schedule and a Trigger per event subscription, applied,
# watched for drift and deleted when the function no longer wants them (no get, as above).
- apiGroups: ["sources.knative.dev"]
  resources: ["pingsources"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["eventing.knative.dev"]
  resources: ["triggers"]
  verbs: ["list", "watch", "create", "patch", "delete"]
{{- end }}
