{{/*
Chart name.
*/}}
{{- define "keda-scalers.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Name prefix P shared with the umbrella (ai-agents-lib: global.namePrefix, or the release name). Objects are
named `P-...` so that they match the Deployments they scale (`P-agent-<type>`).
*/}}
{{- define "keda-scalers.prefix" -}}
{{- include "ai-agents-lib.prefix" . -}}
{{- end }}

{{/*
Base name of this chart's own objects (the TriggerAuthentications): `P-keda`.
*/}}
{{- define "keda-scalers.fullname" -}}
{{- printf "%s-keda" (include "keda-scalers.prefix" .) }}
{{- end }}

{{/*
Chart label value.
*/}}
{{- define "keda-scalers.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "keda-scalers.labels" -}}
helm.sh/chart: {{ include "keda-scalers.chart" . }}
{{ include "keda-scalers.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ai-agents
{{- end }}

{{/*
Selector labels.
*/}}
{{- define "keda-scalers.selectorLabels" -}}
app.kubernetes.io/name: {{ include "keda-scalers.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the TriggerAuthentication for Prometheus; empty when no auth is configured.
Fails when a mode is chosen without the Secret that holds its credentials.
*/}}
{{- define "keda-scalers.prometheusAuthName" -}}
{{- $auth := .Values.prometheus.auth }}
{{- if ne $auth.mode "none" }}
{{- if not $auth.secretName }}
{{- fail (printf "prometheus.auth.secretName is required when prometheus.auth.mode is %q" $auth.mode) }}
{{- end }}
{{- printf "%s-prometheus" (include "keda-scalers.fullname" .) }}
{{- end }}
{{- end }}

{{/*
Name of the TriggerAuthentication carrying the PostgreSQL connection string.
*/}}
{{- define "keda-scalers.postgresqlAuthName" -}}
{{- printf "%s-postgresql" (include "keda-scalers.fullname" .) }}
{{- end }}

{{/*
Name of the TriggerAuthentication carrying the orchestrator's API token.
*/}}
{{- define "keda-scalers.orchestratorAuthName" -}}
{{- printf "%s-orchestrator" (include "keda-scalers.fullname" .) }}
{{- end }}

{{/*
The queue-depth trigger of one agent type. With triggers.queueDepth.source `orchestrator` KEDA asks the
orchestrator's HTTP API, which counts the queue in the database on every call: nothing between the burst and
the HPA's next sync. With `prometheus` it reads the gauge every orchestrator replica reports (hence max).
Call with (dict "root" $ "type" $type "match" $matchers).
*/}}
{{- define "keda-scalers.queueDepthTrigger" -}}
{{- $queue := .root.Values.triggers.queueDepth -}}
{{- if eq $queue.source "orchestrator" -}}
- type: metrics-api
  name: queue-depth
  metricType: AverageValue
  metadata:
    url: {{ printf "http://%s.%s.svc:%s/v1/queue?agent_type=%s" (include "ai-agents-lib.orchestratorName" (dict "root" .root)) .root.Release.Namespace (include "ai-agents-lib.port" "http") .type | quote }}
    valueLocation: queued
    targetValue: {{ $queue.targetPerReplica | quote }}
    authMode: bearer
    timeout: {{ printf "%ds" (int .root.Values.orchestrator.timeoutSeconds) | quote }}
  authenticationRef:
    name: {{ include "keda-scalers.orchestratorAuthName" .root }}
{{- else -}}
{{- include "keda-scalers.prometheusTrigger" (dict "root" .root "name" "queue-depth" "metricType" "AverageValue"
      "query" (printf "max(ai_agents_queue_depth{%s})" .match)
      "threshold" $queue.targetPerReplica) }}
{{- end }}
{{- end }}

{{/*
PromQL label matchers that scope a query to this release's namespace and one agent type, and with
global.multiCluster.clusterName set, to this cluster: KEDA scales this cluster's Deployments, and a Prometheus
(or Thanos) that KEDA asks may hold every cluster's series of the same namespace. `cluster=~"<name>|"` also
matches series without a `cluster` label, so a Prometheus scraping only this cluster without the observability
chart's relabeling still answers (a clusterName is a DNS label: no regex metacharacters).
Call with (dict "root" $ "ns" .Release.Namespace "type" $type).
*/}}
{{- define "keda-scalers.matchers" -}}
{{- printf "namespace=%q,agent_type=%q" .ns .type }}
{{- with (include "ai-agents-lib.multiCluster" .root | fromJson).clusterName }}
{{- printf ",cluster=~%q" (printf "%s|" .) }}
{{- end }}
{{- end }}

{{/*
One prometheus trigger. Call with (dict "root" $ "name" .. "metricType" .. "query" .. "threshold" ..).
Adds authModes and the TriggerAuthentication reference when prometheus.auth.mode is not none.
*/}}
{{- define "keda-scalers.prometheusTrigger" -}}
{{- $auth := include "keda-scalers.prometheusAuthName" .root -}}
- type: prometheus
  name: {{ .name }}
  metricType: {{ .metricType }}
  metadata:
    serverAddress: {{ .root.Values.prometheus.serverAddress | quote }}
    query: {{ .query | quote }}
    threshold: {{ .threshold | quote }}
    {{- if $auth }}
    authModes: {{ .root.Values.prometheus.auth.mode | quote }}
    {{- end }}
  {{- if $auth }}
  authenticationRef:
    name: {{ $auth }}
  {{- end }}
{{- end }}
