{{/* Names, labels and the derived settings every template shares. */}}

{{- define "stratarouter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-<chart>", or just the release name when it already contains the chart name. */}}
{{- define "stratarouter.fullname" -}}
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

{{- define "stratarouter.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "stratarouter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "stratarouter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stratarouter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "stratarouter.operatorSelectorLabels" -}}
{{ include "stratarouter.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "stratarouter.postgresqlSelectorLabels" -}}
{{ include "stratarouter.selectorLabels" . }}
app.kubernetes.io/component: postgresql
{{- end }}

{{- define "stratarouter.serviceAccountName" -}}
{{- default (include "stratarouter.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{- define "stratarouter.postgresqlName" -}}
{{- printf "%s-postgresql" (include "stratarouter.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Where the operator reaches the bundled PostgreSQL: its Service's fixed ClusterIP, or its DNS name. */}}
{{- define "stratarouter.postgresqlHost" -}}
{{- if .Values.postgresql.service.clusterIP }}
{{- .Values.postgresql.service.clusterIP }}
{{- else }}
{{- printf "%s.%s.svc" (include "stratarouter.postgresqlName" .) .Release.Namespace }}
{{- end }}
{{- end }}

{{- define "stratarouter.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Peering (kopf: handlers active in one replica at a time) is needed only with several replicas. */}}
{{- define "stratarouter.peering" -}}
{{- if gt (int .Values.replicas) 1 }}true{{ end }}
{{- end }}

{{- define "stratarouter.apiUrlForPods" -}}
{{- if .Values.operator.apiUrlForPods }}
{{- .Values.operator.apiUrlForPods }}
{{- else }}
{{- printf "http://%s.%s.svc:%d" (include "stratarouter.fullname" .) .Release.Namespace (int .Values.service.port) }}
{{- end }}
{{- end }}

{{/* The Secret and key holding the database URL: the user's, or the bundled PostgreSQL's. */}}
{{- define "stratarouter.databaseSecretName" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecret }}
{{- else }}
{{- include "stratarouter.postgresqlName" . }}
{{- end }}
{{- end }}

{{- define "stratarouter.databaseSecretKey" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecretKey }}
{{- else -}}
url
{{- end }}
{{- end }}

{{/*
Rules for the Execution/Snapshot workload, identical whether granted cluster-wide (ClusterRole) or per
watched namespace (Role). Each rule says which part of the operator needs it.
*/}}
{{- define "stratarouter.workloadRules" -}}
# Handlers (kopf): watch Executions and Snapshots; patch them for kopf's finalizer and progress
# annotations; retention deletes an Execution after its ttlSecondsAfterFinished.
# Checkpoint API: reads the Execution to check that a token's pod is its current pod.
- apiGroups: ["stratarouter.io"]
  resources: ["executions"]
  verbs: ["get", "list", "watch", "patch", "delete"]
# Handlers (kopf): watch Snapshots and patch them for kopf's finalizer (the store's copy is deleted
# with the Snapshot unless deletionPolicy is Retain). Users create and delete Snapshots, never the operator.
# A fork from a Snapshot (spec.startFrom.snapshot) reads it first.
- apiGroups: ["stratarouter.io"]
  resources: ["snapshots"]
  verbs: ["get", "list", "watch", "patch"]
# Handlers and the status coalescer: phase, attempt, lastCheckpoint, conditions (status subresource).
- apiGroups: ["stratarouter.io"]
  resources: ["executions/status", "snapshots/status"]
  verbs: ["patch"]
# Pod creation: workload pods carry an ownerReference to their Execution with blockOwnerDeletion, which
# clusters running the OwnerReferencesPermissionEnforcement admission plugin allow only to a client that
# may update the owner's finalizers.
- apiGroups: ["stratarouter.io"]
  resources: ["executions/finalizers"]
  verbs: ["update"]
# Handlers: create each attempt's pod, watch it end, delete a replaced or suspended one.
# Checkpoint API: reads the pod named in a token to find its Execution and attempt (labels).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "create", "delete"]
# kopf (handler warnings and errors) and the operator's Events on recovery, restore and snapshots.
# Both only ever POST core/v1 Events: no patch, and nothing through events.k8s.io.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}
