{{/* The label matchers that pick this release's operator out of what Prometheus scrapes, for the
PrometheusRule: prometheusRule.selector, else the labels a ServiceMonitor (serviceMonitor.enabled) gives
its targets, namespace and job (the Service's name). */}}
{{- define "stratarouter.metricsSelector" -}}
{{- if .Values.prometheusRule.selector }}
{{- .Values.prometheusRule.selector }}
{{- else }}
{{- printf "namespace=%q,job=%q" .Release.Namespace (include "stratarouter.fullname" .) }}
{{- end }}
{{- end }}
