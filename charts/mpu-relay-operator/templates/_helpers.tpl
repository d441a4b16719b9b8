{{/* The chart's name, truncated to the 63 characters a label allows. */}}
{{- define "mpu-relay-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: the prefix of every object. */}}
{{- define "mpu-relay-operator.fullname" -}}
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

{{- define "mpu-relay-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "mpu-relay-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "mpu-relay-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mpu-relay-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mpu-relay-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mpu-relay-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Leader election is on when asked for, and always with more than one replica. */}}
{{- define "mpu-relay-operator.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) }}true{{- end }}
{{- end }}

{{- define "mpu-relay-operator.leaseName" -}}
{{- default (include "mpu-relay-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "mpu-relay-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Label matchers of this release's metrics in the alert expressions. */}}
{{- define "mpu-relay-operator.metricSelector" -}}
{{- if .Values.prometheusRule.metricSelector }}
{{- .Values.prometheusRule.metricSelector }}
{{- else }}
{{- printf "job=%q,namespace=%q" (printf "%s-metrics" (include "mpu-relay-operator.fullname" .)) .Release.Namespace }}
{{- end }}
{{- end }}

{{/* Namespaces where the operator may get Secrets for ClusterMpuRelayAccounts: the release
namespace and accounts.cluster.secretNamespaces, each once, as a list. */}}
{{- define "mpu-relay-operator.clusterSecretNamespaces" -}}
{{- prepend (default (list) .Values.accounts.cluster.secretNamespaces) .Release.Namespace | uniq | toJson }}
{{- end }}

{{/* What the operator needs wherever it runs, whichever namespaces it watches. */}}
{{- define "mpu-relay-operator.clusterRules" -}}
# Cluster accounts: cached through a watch; their status is the operator's.
- apiGroups: ["mpurelay.io"]
  resources: ["clustermpurelayaccounts"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["mpurelay.io"]
  resources: ["clustermpurelayaccounts/status"]
  verbs: ["patch"]
# Namespace labels (metadata only), for the namespaceSelector of cluster accounts' conditions.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
# kube-runtime's Recorder publishes events.k8s.io/v1 Events and patches their series: on tasks
# and namespaced accounts in their namespace, on cluster accounts in `default`.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* What the operator may do in each watched scope (the cluster, or one namespace). */}}
{{- define "mpu-relay-operator.watchRules" -}}
# patch: the finalizer of a managed task (its relay is stopped before the object goes).
- apiGroups: ["mpurelay.io"]
  resources: ["mpurelaytasks"]
  verbs: ["get", "list", "patch", "watch"]
- apiGroups: ["mpurelay.io"]
  resources: ["mpurelaytasks/status"]
  verbs: ["patch"]
{{- if .Values.accounts.namespaced.enabled }}
- apiGroups: ["mpurelay.io"]
  resources: ["mpurelayaccounts"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["mpurelay.io"]
  resources: ["mpurelayaccounts/status"]
  verbs: ["patch"]
# The Secrets MpuRelayAccounts name, read one at a time: never listed nor watched.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}
{{- end }}

{{/* The kinds tenants use in their namespaces: tasks, and accounts when they may have their own. */}}
{{- define "mpu-relay-operator.tenantResources" -}}
{{- if .Values.accounts.namespaced.enabled }}["mpurelaytasks", "mpurelayaccounts"]{{ else }}["mpurelaytasks"]{{ end }}
{{- end }}

{{/* Settings that cannot be expressed in values.schema.json, checked at render time. */}}
{{- define "mpu-relay-operator.validate" -}}
{{- if and .Values.credentials.existingSecret .Values.rrsa.enabled }}
{{- fail "credentials.existingSecret and rrsa.enabled are mutually exclusive: the operator would use the AccessKey and ignore RRSA" }}
{{- end }}
{{- if and .Values.caBundle.secretName .Values.caBundle.configMapName }}
{{- fail "caBundle.secretName and caBundle.configMapName are mutually exclusive: name the one object that holds the CA bundle" }}
{{- end }}
{{- if and .Values.rbac.create (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) }}
{{- fail "serviceAccount.name is required when serviceAccount.create is false" }}
{{- end }}
{{- with .Values.accounts.operatorAccount }}
{{- if and .create (not .namespaces) (not .namespaceSelector.matchLabels) (not .namespaceSelector.matchExpressions) }}
{{- fail "accounts.operatorAccount.create needs namespaces or a namespaceSelector with matchLabels or matchExpressions: an account without conditions admits no task namespace" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The Secret holding the key that signs managed tasks' status.management. */}}
{{- define "mpu-relay-operator.ownershipSecret" -}}
{{ include "mpu-relay-operator.fullname" . }}-ownership
{{- end }}
