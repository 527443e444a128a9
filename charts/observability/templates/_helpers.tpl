{{/*
Name prefix shared by every ai-agents chart (ai-agents-lib: global.namePrefix, else the release name).
*/}}
{{- define "observability.prefix" -}}
{{- include "ai-agents-lib.prefix" . -}}
{{- end }}

{{/*
Expand the name of the chart.
*/}}
{{- define "observability.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Name of the ServiceMonitor, PodMonitor and PrometheusRule: <prefix>-observability.
*/}}
{{- define "observability.fullname" -}}
{{- printf "%s-%s" (include "observability.prefix" .) .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "observability.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "observability.labels" -}}
helm.sh/chart: {{ include "observability.chart" . }}
{{ include "observability.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ai-agents
{{- end }}

{{/*
Selector labels
*/}}
{{- define "observability.selectorLabels" -}}
app.kubernetes.io/name: {{ include "observability.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of the monitoring custom resources: the common labels plus additionalLabels, which is how a
Prometheus' serviceMonitorSelector/podMonitorSelector/ruleSelector (e.g. `release: kube-prometheus-stack`)
picks them up.
*/}}
{{- define "observability.monitoringLabels" -}}
{{ include "observability.labels" . }}
{{- with .Values.additionalLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Which fleet objects to scrape: the umbrella labels every orchestrator and agent Service and pod with
part-of/instance/name (docs/contracts.md). Used by both the ServiceMonitor and the PodMonitor.
*/}}
{{- define "observability.targetSelector" -}}
namespaceSelector:
  matchNames:
    - {{ .Release.Namespace }}
selector:
  matchLabels:
    app.kubernetes.io/part-of: ai-agents
    app.kubernetes.io/instance: {{ default .Release.Name .Values.targets.release }}
  matchExpressions:
    - key: app.kubernetes.io/name
      operator: In
      values:
        {{- toYaml .Values.targets.components | nindent 8 }}
{{- end }}

{{/*
Relabelings shared by both monitors. The pod's agent type becomes the `agent_type` target label so that
server-side series (gRPC, HTTP, process) can be split by type; orchestrator pods have no such label, so their
own `agent_type` sample labels (queue depth, tasks) stay as they are. `pod` and `namespace` are set explicitly
so dashboards and rules can rely on them whatever the operator's defaults. With
global.multiCluster.clusterName set, `cluster` names the cluster (docs/multi-cluster.md).
*/}}
{{- define "observability.relabelings" -}}
- sourceLabels: [__meta_kubernetes_pod_label_ai_agents_io_agent_type]
  targetLabel: agent_type
- sourceLabels: [__meta_kubernetes_pod_name]
  targetLabel: pod
- sourceLabels: [__meta_kubernetes_namespace]
  targetLabel: namespace
{{- with (include "ai-agents-lib.multiCluster" . | fromJson).clusterName }}
{{- /* A target label, not Prometheus' externalLabels: those are invisible to the local queries of the rules,
dashboards and KEDA, and this chart does not own the Prometheus. Every series of the target (and its `up`) gets it. */}}
- targetLabel: cluster
  replacement: {{ . | quote }}
  action: replace
{{- end }}
{{- end }}

{{/*
An agent's own series already carry agent_type (equal to the target label), which Prometheus would keep as
exported_agent_type; drop that duplicate.
*/}}
{{- define "observability.metricRelabelings" -}}
- action: labeldrop
  regex: exported_agent_type
{{- end }}

{{/*
Label matcher that scopes every rule to the fleet's namespace.
*/}}
{{- define "observability.ruleSelector" -}}
namespace="{{ .Release.Namespace }}"
{{- end }}
