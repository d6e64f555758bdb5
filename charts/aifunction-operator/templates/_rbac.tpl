{{/* Rules the operator needs wherever functions live (a ClusterRole in cluster mode, a Role per
watched namespace in namespaced mode). */}}
{{- define "aifn.functionRules" -}}
# AIFunctions: kopf watches them, patches its finalizer and progress annotations, writes status.
- apiGroups: ["aifn.dev"]
  resources: ["aifunctions"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["aifn.dev"]
  resources: ["aifunctions/status"]
  verbs: ["get", "patch", "update"]
# The Knative Service each function renders into (server-side apply, clean-up on delete).
- apiGroups: ["serving.knative.dev"]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# Pods of a function's revisions: tells "waiting for a GPU node" from other pending states.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# Events about handler progress and errors (core and events.k8s.io APIs).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# Issue #8 (event triggers) adds here: pingsources.sources.knative.dev and
# triggers.eventing.knative.dev (get list watch create patch update delete), and
# configmaps create/patch for the functions' trigger configuration.
{{- end }}
