{{/*
Chart name.
*/}}
{{- define "mesh.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Object-name prefix P shared with the umbrella chart: global.namePrefix, else the release name.
Every name this chart renders or refers to starts with it (see docs/contracts.md).
*/}}
{{- define "mesh.fullname" -}}
{{- $global := .Values.global | default dict }}
{{- default .Release.Name $global.namePrefix | trunc 40 | trimSuffix "-" }}
{{- end }}

{{/*
Chart name and version as used by the chart label.
*/}}
{{- define "mesh.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "mesh.labels" -}}
helm.sh/chart: {{ include "mesh.chart" . }}
{{ include "mesh.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ai-agents
{{- end }}

{{/*
Selector labels.
*/}}
{{- define "mesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The fixed ports of every ai-agents container (docs/contracts.md).
*/}}
{{- define "mesh.ports" -}}
{{- dict "http" 8080 "grpc" 9090 "metrics" 9091 "health" 8081 "postgresql" 5432 | toJson }}
{{- end }}

{{/*
SPIFFE principal of a ServiceAccount in the release namespace.
Usage: include "mesh.principal" (dict "ctx" $ "sa" "name")
*/}}
{{- define "mesh.principal" -}}
{{- printf "%s/ns/%s/sa/%s" .ctx.Values.trustDomain .ctx.Release.Namespace .sa }}
{{- end }}

{{/*
Service (and ServiceAccount) name of a mesh target: "orchestrator" or an agent type.
Usage: include "mesh.serviceName" (dict "ctx" $ "target" "coding")
*/}}
{{- define "mesh.serviceName" -}}
{{- if eq .target "orchestrator" }}
{{- printf "%s-orchestrator" (include "mesh.fullname" .ctx) }}
{{- else }}
{{- printf "%s-agent-%s" (include "mesh.fullname" .ctx) .target }}
{{- end }}
{{- end }}

{{/*
Fully qualified hostname of a mesh target's Service.
Usage: include "mesh.serviceHost" (dict "ctx" $ "target" "coding")
*/}}
{{- define "mesh.serviceHost" -}}
{{- printf "%s.%s.svc.%s" (include "mesh.serviceName" .) .ctx.Release.Namespace .ctx.Values.clusterDomain }}
{{- end }}

{{/*
Targets that can get DestinationRules, faults and mesh routes: orchestrator plus the deployed agent types.
Returns a JSON list.
*/}}
{{- define "mesh.targets" -}}
{{- prepend .Values.agentTypes "orchestrator" | toJson }}
{{- end }}

{{/*
Names of the workloads and the ServiceAccounts Istio creates for the gateways (class istio appends
"-istio" to the Gateway name; waypoints keep the Gateway name).
*/}}
{{- define "mesh.waypointName" -}}
{{- printf "%s-waypoint" (include "mesh.fullname" .) }}
{{- end }}

{{- define "mesh.gatewayName" -}}
{{- printf "%s-gateway" (include "mesh.fullname" .) }}
{{- end }}

{{- define "mesh.gatewayServiceAccount" -}}
{{- printf "%s-%s" (include "mesh.gatewayName" .) .Values.gateway.className }}
{{- end }}

{{/*
Pod selector of this release's workloads with a given app.kubernetes.io/name (umbrella labels).
Usage: include "mesh.workloadSelector" (dict "ctx" $ "name" "orchestrator")
*/}}
{{- define "mesh.workloadSelector" -}}
matchLabels:
  app.kubernetes.io/instance: {{ .ctx.Release.Name }}
  app.kubernetes.io/name: {{ .name }}
{{- end }}

{{/*
Cross-value checks: stop with a message naming the keys instead of rendering something Istio would
ignore or resolve unpredictably. Included by validate.yaml.
*/}}
{{- define "mesh.validate" -}}
{{- $targets := include "mesh.targets" . | fromJsonArray }}
{{- if and .Values.chaos.enabled (not .Values.waypoint.enabled) }}
{{- fail "chaos.enabled requires waypoint.enabled: in ambient mode VirtualService faults are applied by the waypoint" }}
{{- end }}
{{- if and .Values.meshRoutes.enabled (not .Values.waypoint.enabled) }}
{{- fail "meshRoutes.enabled requires waypoint.enabled: in ambient mode Service-attached HTTPRoutes are applied by the waypoint" }}
{{- end }}
{{- if .Values.chaos.enabled }}
{{- range .Values.chaos.targets }}
{{- if not (has . $targets) }}
{{- fail (printf "chaos.targets: %q is neither orchestrator nor one of agentTypes" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- if .Values.meshRoutes.enabled }}
{{- range .Values.meshRoutes.services }}
{{- if not (has . $targets) }}
{{- fail (printf "meshRoutes.services: %q is neither orchestrator nor one of agentTypes" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.chaos.enabled .Values.meshRoutes.enabled }}
{{- range .Values.chaos.targets }}
{{- if has . $.Values.meshRoutes.services }}
{{- fail (printf "chaos.targets and meshRoutes.services both contain %q: a Service must not be targeted by both a VirtualService and an HTTPRoute (Istio ambient); remove it from one list" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
