{{/*
Chart name.
*/}}
{{- define "mesh.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Object-name prefix P shared with the umbrella chart (ai-agents-lib: global.namePrefix, else the release name).
Every name this chart renders or refers to starts with it (see docs/contracts.md).
*/}}
{{- define "mesh.fullname" -}}
{{- include "ai-agents-lib.prefix" . -}}
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
The fixed ports of every ai-agents container (docs/contracts.md), from ai-agents-lib. Returns a JSON object.
*/}}
{{- define "mesh.ports" -}}
{{- include "ai-agents-lib.ports" . -}}
{{- end }}

{{/*
SPIFFE principals of a ServiceAccount, as YAML list items: one per trust domain (global.trustDomain and
global.trustDomainAliases, via ai-agents-lib), so a peer of another cluster of a multi-primary mesh that
presents an alias is admitted too. The namespace defaults to the release namespace.
Usage: include "mesh.principals" (dict "root" $ "sa" "name" ["namespace" "ns"])
*/}}
{{- define "mesh.principals" -}}
{{- $namespace := .namespace | default .root.Release.Namespace -}}
{{- include "ai-agents-lib.principals" (dict "root" .root "namespace" $namespace "sa" .sa) | fromJsonArray | toYaml -}}
{{- end }}

{{/*
Service (and ServiceAccount) name of a mesh target: "orchestrator" or an agent type.
Usage: include "mesh.serviceName" (dict "root" $ "target" "coding")
*/}}
{{- define "mesh.serviceName" -}}
{{- if eq .target "orchestrator" }}
{{- include "ai-agents-lib.orchestratorName" (dict "root" .root) }}
{{- else }}
{{- include "ai-agents-lib.agentName" (dict "root" .root "type" .target) }}
{{- end }}
{{- end }}

{{/*
Fully qualified hostname of a mesh target's Service.
Usage: include "mesh.serviceHost" (dict "root" $ "target" "coding")
*/}}
{{- define "mesh.serviceHost" -}}
{{- printf "%s.%s.svc.%s" (include "mesh.serviceName" .) .root.Release.Namespace .root.Values.clusterDomain }}
{{- end }}

{{/*
Agent types the umbrella deploys (global.agents.<type>.enabled, the switch shared with it, via ai-agents-lib):
policies and DestinationRules name the ServiceAccounts and Services `P-agent-<type>` of these only.
Returns a JSON list.
*/}}
{{- define "mesh.agentTypes" -}}
{{- include "ai-agents-lib.enabledAgentTypes" . -}}
{{- end }}

{{/*
Targets that can get DestinationRules, faults and mesh routes: orchestrator plus the deployed agent types.
Returns a JSON list.
*/}}
{{- define "mesh.targets" -}}
{{- prepend (include "mesh.agentTypes" . | fromJsonArray) "orchestrator" | toJson }}
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
Usage: include "mesh.workloadSelector" (dict "root" $ "name" "orchestrator")
*/}}
{{- define "mesh.workloadSelector" -}}
matchLabels:
  app.kubernetes.io/instance: {{ .root.Release.Name }}
  app.kubernetes.io/name: {{ .name }}
{{- end }}

{{/*
Cross-value checks: stop with a message naming the keys instead of rendering something Istio would
ignore or resolve unpredictably. Included by validate.yaml.
*/}}
{{- define "mesh.validate" -}}
{{- $targets := include "mesh.targets" . | fromJsonArray }}
{{- /* trustDomain was this chart's own key; global.trustDomain replaced it (the umbrella prints it for istiod). */}}
{{- if not (kindIs "invalid" .Values.trustDomain) }}
{{- $global := (include "ai-agents-lib.trustDomains" . | fromJsonArray) | first }}
{{- if ne (toString .Values.trustDomain) $global }}
{{- fail (printf "trustDomain (mesh.trustDomain in ai-agents) is %q but global.trustDomain is %q: global.trustDomain is the one trust domain of the suite (every principal of the mesh policies); set it and remove trustDomain" (toString .Values.trustDomain) $global) }}
{{- end }}
{{- end }}
{{- /* Istio ambient runs multi-cluster only as multi-primary on several networks, each cluster with the same mesh ID. */}}
{{- $mc := include "ai-agents-lib.multiCluster" . | fromJson }}
{{- if and $mc.clusterName (not (and $mc.meshID $mc.network)) }}
{{- fail (printf "global.multiCluster.clusterName is %q, so the mesh is multi-cluster: global.multiCluster.meshID and global.multiCluster.network are required too (Istio ambient supports multi-primary on separate networks only; use the values istiod was installed with)" $mc.clusterName) }}
{{- end }}
{{- /* agentTypes was this chart's own list of agent types; global.agents.<type>.enabled replaced it. */}}
{{- if not (kindIs "invalid" .Values.agentTypes) }}
{{- range $type := include "ai-agents-lib.agentTypes" . | fromJsonArray }}
{{- include "ai-agents-lib.checkAgentSwitch" (dict "root" $ "type" $type "value" (has $type $.Values.agentTypes) "key" (printf "agentTypes (mesh.agentTypes in ai-agents) containing %q" $type)) }}
{{- end }}
{{- end }}
{{- if and .Values.chaos.enabled (not .Values.waypoint.enabled) }}
{{- fail "chaos.enabled requires waypoint.enabled: in ambient mode VirtualService faults are applied by the waypoint" }}
{{- end }}
{{- if and .Values.meshRoutes.enabled (not .Values.waypoint.enabled) }}
{{- fail "meshRoutes.enabled requires waypoint.enabled: in ambient mode Service-attached HTTPRoutes are applied by the waypoint" }}
{{- end }}
{{- if .Values.chaos.enabled }}
{{- range .Values.chaos.targets }}
{{- if not (has . $targets) }}
{{- fail (printf "chaos.targets: %q is neither orchestrator nor an enabled agent type (global.agents.<type>.enabled)" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- if .Values.meshRoutes.enabled }}
{{- range .Values.meshRoutes.services }}
{{- if not (has . $targets) }}
{{- fail (printf "meshRoutes.services: %q is neither orchestrator nor an enabled agent type (global.agents.<type>.enabled)" .) }}
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
