{{/* Chart name, truncated to a DNS label. */}}
{{- define "aifn.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name used as the prefix of every resource. */}}
{{- define "aifn.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* name-version for the helm.sh/chart label. */}}
{{- define "aifn.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "aifn.labels" -}}
helm.sh/chart: {{ include "aifn.chart" . }}
{{ include "aifn.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: aifn
{{- end }}

{{/* Labels that select the operator pod. */}}
{{- define "aifn.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aifn.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The operator's ServiceAccount name. */}}
{{- define "aifn.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "aifn.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image reference: digest wins over tag; tag defaults to appVersion. */}}
{{- define "aifn.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Labels of a CRD: its own labels (from crds/), plus the release's. Takes (dict "context" $ "own" labels). */}}
{{- define "aifn.crdLabels" -}}
{{- $ctx := .context -}}
{{- $release := dict "helm.sh/chart" (include "aifn.chart" $ctx) "app.kubernetes.io/instance" $ctx.Release.Name "app.kubernetes.io/managed-by" $ctx.Release.Service "app.kubernetes.io/version" $ctx.Chart.AppVersion -}}
{{- toYaml (merge (deepCopy .own) $release) -}}
{{- end }}

{{/* Annotations of a CRD: its own, plus helm.sh/resource-policy: keep when crds.keep. Takes (dict "context" $ "own" annotations). */}}
{{- define "aifn.crdAnnotations" -}}
{{- $annotations := deepCopy .own -}}
{{- if .context.Values.crds.keep }}
{{- $_ := set $annotations "helm.sh/resource-policy" "keep" }}
{{- end }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* "true" unless Helm is talking to a cluster that lacks operator.knativeNamespace. */}}
{{- define "aifn.knativeNamespaceUsable" -}}
{{- $online := lookup "v1" "Namespace" "" "kube-system" }}
{{- if or (not $online) (lookup "v1" "Namespace" "" .Values.operator.knativeNamespace) }}true{{ end }}
{{- end }}
