{{/* Rules the operator needs wherever functions live (a ClusterRole in cluster mode, a Role per
watched namespace in namespaced mode). */}}
{{- define "aifn.functionRules" -}}
# The rules docs/operator.md lists, nothing more: the operator only gets, lists, watches,
# server-side applies (create/patch) and merge-patches; Knative Services go with their
# AIFunction through ownerReferences, so no delete.
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
# Pods of functions: tells "waiting for a GPU node" from other pending states.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# Events about handler progress and errors (kopf's and ours).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# Issue #8 (event triggers) adds here: pingsources.sources.knative.dev and
# triggers.eventing.knative.dev (get list watch create patch), and configmaps
# (get list watch create patch) for the functions' inline handler code.
{{- end }}
