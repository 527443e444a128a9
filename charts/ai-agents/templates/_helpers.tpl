{{/*
Object-name prefix `P` and `P-<suffix>`: the rule is shared with the subcharts, so it lives in ai-agents-lib
(global.namePrefix, else the release name; a prefix too long for every name to fit fails).
Usage: include "ai-agents.componentName" (dict "root" $ "suffix" "agent-coding")
*/}}
{{- define "ai-agents.fullname" -}}
{{- include "ai-agents-lib.prefix" . -}}
{{- end }}

{{- define "ai-agents.componentName" -}}
{{- include "ai-agents-lib.componentName" . -}}
{{- end }}

{{/*
Chart name and version as used by the helm.sh/chart label.
*/}}
{{- define "ai-agents.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{/*
Selector labels (never a version: selectors are immutable).
Usage: include "ai-agents.selectorLabels" (dict "root" $ "name" "agent" "component" "agent-coding" "agentType" "coding")
*/}}
{{- define "ai-agents.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- with .agentType }}
ai-agents.io/agent-type: {{ . }}
{{- end }}
{{- end }}

{{/*
Common labels: the selector labels plus chart, version, manager and part-of.
Same arguments as ai-agents.selectorLabels.
*/}}
{{- define "ai-agents.labels" -}}
helm.sh/chart: {{ include "ai-agents.chart" .root }}
{{ include "ai-agents.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: ai-agents
{{- end }}

{{/*
Pod template labels: common labels plus, with the mesh on, enrolment in Istio ambient, and with
global.multiCluster.network set, the pod's Istio network (ai-agents-lib.networkPodLabels).
*/}}
{{- define "ai-agents.podLabels" -}}
{{ include "ai-agents.labels" . }}
{{- if include "ai-agents.meshEnabled" .root }}
istio.io/dataplane-mode: ambient
{{- end }}
{{- with include "ai-agents-lib.networkPodLabels" .root }}
{{- . }}
{{- end }}
{{- end }}

{{/*
"true" when the mesh subchart is enabled, else empty.
*/}}
{{- define "ai-agents.meshEnabled" -}}
{{- if (.Values.mesh).enabled }}true{{ end -}}
{{- end }}

{{/*
Labels for the orchestrator and agent ClusterIP Services: with the mesh and its waypoint on, route their
traffic through the waypoint `P-waypoint`. The parent sees the mesh chart's defaults only while it is
enabled, so a missing mesh.waypoint.enabled counts as true (the mesh chart's default).
*/}}
{{- define "ai-agents.waypointLabels" -}}
{{- if include "ai-agents.meshEnabled" . }}
{{- if dig "waypoint" "enabled" true (.Values.mesh | default dict) }}
istio.io/use-waypoint: {{ include "ai-agents.componentName" (dict "root" . "suffix" "waypoint") }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The gRPC target agents (and in-cluster clients) dial. A waypoint attached to a Service sees only traffic
addressed to that Service, so with the mesh's waypoint on they dial the orchestrator's ClusterIP Service:
the waypoint then applies fault injection, retries, outlier detection, load balancing (per request) and L7
authorization. Without a waypoint they dial the headless Service and balance per call themselves
(round_robin over every orchestrator pod). With `xds.enabled` the xDS management server decides all of that:
the target names the ClusterIP Service's host, the listener name Istio (and most control planes) serve for it.
*/}}
{{- define "ai-agents.orchestratorTarget" -}}
{{- $scheme := "dns" }}
{{- $service := "orchestrator-headless" }}
{{- if .Values.xds.enabled }}
{{- $scheme = "xds" }}
{{- $service = "orchestrator" }}
{{- else if include "ai-agents.waypointLabels" . | trim }}
{{- $service = "orchestrator" }}
{{- end }}
{{- printf "%s:///%s.%s.svc.%s:%s" $scheme (include "ai-agents.componentName" (dict "root" . "suffix" $service)) .Release.Namespace .Values.clusterDomain (include "ai-agents-lib.port" "grpc") }}
{{- end }}

{{/*
The xDS bootstrap: ConfigMap name, the directory it is mounted at, and its checksum for the agents' pod template
(gRPC reads the bootstrap once per process, so a change must roll the agents).
*/}}
{{- define "ai-agents.xdsBootstrapName" -}}
{{- include "ai-agents.componentName" (dict "root" . "suffix" "xds-bootstrap") }}
{{- end }}
{{- define "ai-agents.xdsBootstrapDir" -}}
/etc/ai-agents/xds
{{- end }}
{{- define "ai-agents.xdsBootstrapJson" -}}
{{- if not (.Values.xds.bootstrap | default dict).xds_servers }}
{{- fail "xds.bootstrap is required with xds.enabled: the gRPC xDS bootstrap, with at least one entry in xds_servers" }}
{{- end }}
{{- toPrettyJson .Values.xds.bootstrap }}
{{- end }}

{{/*
Image reference `registry/repository:tag`; the tag defaults to the chart's appVersion and an empty registry
is left out. Usage: include "ai-agents.image" (dict "root" $ "image" .Values.orchestrator.image)
where "image" holds overrides of .Values.image.
*/}}
{{- define "ai-agents.image" -}}
{{- $img := merge (deepCopy (.image | default dict)) .root.Values.image -}}
{{- $repo := required "image.repository is required" $img.repository -}}
{{- $tag := toString ($img.tag | default .root.Chart.AppVersion) -}}
{{- if $img.registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" $img.registry) $repo $tag -}}
{{- else -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}
{{- end }}

{{/*
Pull policy for the same dict as ai-agents.image.
*/}}
{{- define "ai-agents.imagePullPolicy" -}}
{{- (.image | default dict).pullPolicy | default .root.Values.image.pullPolicy -}}
{{- end }}

{{/*
Pod security context for Pod Security Standard `restricted`. Fixed, not a value: the chart promises it.
Usage: include "ai-agents.podSecurityContext" 10001
*/}}
{{- define "ai-agents.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
fsGroup: {{ . }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Container security context for Pod Security Standard `restricted`.
*/}}
{{- define "ai-agents.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
The four named ports of every runtime container (docs/contracts.md; the numbers come from ai-agents-lib).
*/}}
{{- define "ai-agents.containerPorts" -}}
- name: http
  containerPort: {{ include "ai-agents-lib.port" "http" }}
  protocol: TCP
- name: grpc
  containerPort: {{ include "ai-agents-lib.port" "grpc" }}
  protocol: TCP
- name: metrics
  containerPort: {{ include "ai-agents-lib.port" "metrics" }}
  protocol: TCP
- name: health
  containerPort: {{ include "ai-agents-lib.port" "health" }}
  protocol: TCP
{{- end }}

{{/*
The same four ports on a Service; appProtocol tells meshes and gateways what each speaks (gRPC is h2c).
*/}}
{{- define "ai-agents.servicePorts" -}}
- name: http
  port: {{ include "ai-agents-lib.port" "http" }}
  targetPort: http
  protocol: TCP
  appProtocol: http
- name: grpc
  port: {{ include "ai-agents-lib.port" "grpc" }}
  targetPort: grpc
  protocol: TCP
  appProtocol: kubernetes.io/h2c
- name: metrics
  port: {{ include "ai-agents-lib.port" "metrics" }}
  targetPort: metrics
  protocol: TCP
  appProtocol: http
- name: health
  port: {{ include "ai-agents-lib.port" "health" }}
  targetPort: health
  protocol: TCP
  appProtocol: http
{{- end }}

{{/*
Startup, readiness and liveness probes on the `health` port.
*/}}
{{- define "ai-agents.probes" -}}
startupProbe:
  httpGet:
    path: /healthz
    port: health
  periodSeconds: 2
  failureThreshold: 60
readinessProbe:
  httpGet:
    path: /readyz
    port: health
  periodSeconds: 5
  timeoutSeconds: 2
  failureThreshold: 3
livenessProbe:
  httpGet:
    path: /healthz
    port: health
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
{{- end }}

{{/*
Default topology spread: over zones and then hosts, never blocking scheduling (ScheduleAnyway), counting only
pods of the same rollout (pod-template-hash). A non-empty `custom` list replaces it.
Usage: include "ai-agents.topologySpread" (dict "root" $ "custom" .x.topologySpreadConstraints "selector" $sel)
where $sel is the selector labels dict of the component.
*/}}
{{- define "ai-agents.topologySpread" -}}
{{- if .custom }}
{{- toYaml .custom }}
{{- else }}
{{- range $key := list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
- maxSkew: 1
  topologyKey: {{ $key }}
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "ai-agents.selectorLabels" $.selector | nindent 6 }}
  matchLabelKeys:
    - pod-template-hash
{{- end }}
{{- end }}
{{- end }}

{{/*
Environment shared by every runtime process: logging, the four ports, the API token and tracing.
Usage: include "ai-agents.commonEnv" (dict "root" $ "service" "orchestrator")
*/}}
{{- define "ai-agents.commonEnv" -}}
- name: AI_AGENTS_LOG_FORMAT
  value: json
# The live settings (log level, concurrency, handler settings, ...) come from this file, not from env here:
# a change to them must reach running pods without changing the pod template (docs/configuration.md).
- name: AI_AGENTS_CONFIG_FILE
  value: {{ include "ai-agents.liveConfigDir" .root }}/live.yaml
- name: AI_AGENTS_HTTP_PORT
  value: "{{ include "ai-agents-lib.port" "http" }}"
- name: AI_AGENTS_GRPC_PORT
  value: "{{ include "ai-agents-lib.port" "grpc" }}"
- name: AI_AGENTS_METRICS_PORT
  value: "{{ include "ai-agents-lib.port" "metrics" }}"
- name: AI_AGENTS_HEALTH_PORT
  value: "{{ include "ai-agents-lib.port" "health" }}"
{{- if .root.Values.apiToken.enabled }}
- name: AI_AGENTS_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "ai-agents.apiTokenSecretName" .root }}
      key: {{ include "ai-agents.apiTokenSecretKey" .root }}
{{- end }}
{{- with .root.Values.tracing.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ $.service | quote }}
{{- end }}
{{- end }}

{{/*
Secret and key holding the API token.
*/}}
{{/*
"true" when KEDA's queue trigger asks the orchestrator's HTTP API (keda-scalers triggers.queueDepth.source; this
chart sees the subchart's default merged in): the NetworkPolicy and the checks in validate.yaml follow it.
*/}}
{{- define "ai-agents.kedaQueueFromOrchestrator" -}}
{{- and .Values.kedaScalers.enabled (eq (dig "triggers" "queueDepth" "source" "" .Values.kedaScalers) "orchestrator") -}}
{{- end }}

{{- define "ai-agents.apiTokenSecretName" -}}
{{- .Values.apiToken.existingSecret | default (include "ai-agents.componentName" (dict "root" . "suffix" "api-token")) -}}
{{- end }}
{{- define "ai-agents.apiTokenSecretKey" -}}
{{- if .Values.apiToken.existingSecret }}{{ .Values.apiToken.existingSecretKey }}{{ else }}token{{ end -}}
{{- end }}

{{/*
"true" when the orchestrator uses an external database (store.dsn or store.existingSecret): then no
embedded PostgreSQL is rendered, whatever store.postgresql.enabled says.
*/}}
{{- define "ai-agents.externalDatabase" -}}
{{- if or .Values.store.dsn .Values.store.existingSecret }}true{{ end -}}
{{- end }}

{{/*
"true" when the embedded PostgreSQL StatefulSet is rendered. Fails when there would be no database at all.
*/}}
{{- define "ai-agents.embeddedPostgresql" -}}
{{- if not (include "ai-agents.externalDatabase" .) -}}
{{- if .Values.store.postgresql.enabled }}true{{ else -}}
{{- fail "store.dsn or store.existingSecret is required when store.postgresql.enabled is false: the orchestrator needs a PostgreSQL database" -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/*
Secret and key holding the database DSN.
*/}}
{{- define "ai-agents.databaseSecretName" -}}
{{- .Values.store.existingSecret | default (include "ai-agents.componentName" (dict "root" . "suffix" "database")) -}}
{{- end }}
{{- define "ai-agents.databaseSecretKey" -}}
{{- if .Values.store.existingSecret }}{{ .Values.store.existingSecretKey }}{{ else }}dsn{{ end -}}
{{- end }}

{{/*
Effective settings of one agent type: each key set under agents.<type> replaces the same key of
agentDefaults, except `simulate` and `llm`, whose keys are merged one level deep. (sprig's merge would
ignore false and 0, so an override such as failureRate: 0 is resolved key by key here.)
Usage: include "ai-agents.agentConfig" (dict "root" $ "type" "coding") | fromYaml
*/}}
{{- define "ai-agents.agentConfig" -}}
{{- $defaults := .root.Values.agentDefaults -}}
{{- $agent := index .root.Values.agents .type | default dict -}}
{{- $out := dict -}}
{{- range $key, $value := $defaults -}}
{{- if and (hasKey $agent $key) (has $key (list "simulate" "llm")) -}}
{{- $merged := deepCopy $value -}}
{{- range $k, $v := (index $agent $key | default dict) -}}
{{- $_ := set $merged $k $v -}}
{{- end -}}
{{- $_ := set $out $key $merged -}}
{{- else if hasKey $agent $key -}}
{{- $_ := set $out $key (index $agent $key) -}}
{{- else -}}
{{- $_ := set $out $key $value -}}
{{- end -}}
{{- end -}}
{{- range $key, $value := $agent -}}
{{- if not (hasKey $out $key) -}}
{{- $_ := set $out $key $value -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end }}

{{/*
Agent types that are enabled (global.agents.<type>.enabled, the one switch shared with the subcharts), in a
fixed order, as a YAML list.
*/}}
{{- define "ai-agents.agentTypes" -}}
{{- range $type := include "ai-agents-lib.enabledAgentTypes" . | fromJsonArray }}
- {{ $type }}
{{- end }}
{{- end }}

{{/*
NetworkPolicy port list entries. Usage: include "ai-agents.npPorts" (list 8080 9090)
*/}}
{{- define "ai-agents.npPorts" -}}
{{- range . }}
- protocol: TCP
  port: {{ . }}
{{- end }}
{{- end }}

{{/*
podSelector body for the pods of one component. Usage: include "ai-agents.npPodSelector" (dict "root" $ "name" "agent")
*/}}
{{- define "ai-agents.npPodSelector" -}}
matchLabels:
  app.kubernetes.io/name: {{ .name }}
  app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end }}

{{/*
podSelector body for every pod this release creates (and only those: Istio copies a Gateway's labels onto the
waypoint and gateway pods, which must not be caught by the default deny).
*/}}
{{- define "ai-agents.npReleasePods" -}}
matchLabels:
  app.kubernetes.io/instance: {{ .Release.Name }}
  app.kubernetes.io/part-of: ai-agents
matchExpressions:
  - key: app.kubernetes.io/name
    operator: In
    values: [orchestrator, agent, postgresql, chaos-monkey, health-check]
{{- end }}

{{/*
Common metadata of a NetworkPolicy. Usage: include "ai-agents.npMetadata" (dict "root" $ "suffix" "default-deny")
*/}}
{{- define "ai-agents.npMetadata" -}}
name: {{ include "ai-agents.componentName" (dict "root" .root "suffix" (printf "np-%s" .suffix)) }}
namespace: {{ .root.Release.Namespace }}
labels:
  {{- include "ai-agents.labels" (dict "root" .root "name" "ai-agents" "component" "network-policy") | nindent 2 }}
{{- end }}

{{/*
Ingress rule: Prometheus scrapes the `metrics` port.
*/}}
{{- define "ai-agents.npPrometheusIngress" -}}
- from:
    - namespaceSelector:
        {{- toYaml .Values.networkPolicy.prometheus.namespaceSelector | nindent 8 }}
      podSelector:
        {{- toYaml .Values.networkPolicy.prometheus.podSelector | nindent 8 }}
  ports:
    - protocol: TCP
      port: {{ include "ai-agents-lib.port" "metrics" }}
{{- end }}

{{/*
"true" when agents prove their identity with projected service-account tokens (agentIdentity.mode kubernetes).
*/}}
{{- define "ai-agents.kubernetesAgentIdentity" -}}
{{- if eq .Values.agentIdentity.mode "kubernetes" }}true{{ end -}}
{{- end }}

{{/*
Where agents mount their projected token (audience ai-agents) and the orchestrator's JSON map from each enabled
agent type's ServiceAccount `P-agent-<type>` to that type (AI_AGENTS_AGENT_SERVICE_ACCOUNTS).
*/}}
{{- define "ai-agents.agentTokenDir" -}}
/var/run/secrets/ai-agents
{{- end }}
{{- define "ai-agents.agentServiceAccounts" -}}
{{- $map := dict -}}
{{- range $type := include "ai-agents.agentTypes" . | fromYamlArray -}}
{{- $_ := set $map (include "ai-agents.componentName" (dict "root" $ "suffix" (printf "agent-%s" $type))) $type -}}
{{- end -}}
{{- toJson $map -}}
{{- end }}

{{/*
The live configuration: ConfigMap `P-live-config`, mounted as a directory at ai-agents.liveConfigDir.
*/}}
{{- define "ai-agents.liveConfigName" -}}
{{- include "ai-agents.componentName" (dict "root" . "suffix" "live-config") -}}
{{- end }}
{{- define "ai-agents.liveConfigDir" -}}
/etc/ai-agents/live
{{- end }}

{{/*
The volume mount and volume of the live configuration. A whole-directory mount, never subPath: the kubelet
updates a ConfigMap volume by swapping its `..data` symlink, which a subPath mount never sees.
*/}}
{{- define "ai-agents.liveConfigMount" -}}
- name: live-config
  mountPath: {{ include "ai-agents.liveConfigDir" . }}
  readOnly: true
{{- end }}
{{- define "ai-agents.liveConfigVolume" -}}
- name: live-config
  configMap:
    name: {{ include "ai-agents.liveConfigName" . }}
{{- end }}

{{/*
Pod annotation over the orchestrator's restart-needing configuration that lives outside its pod template (the
database Secret's inputs): a change rolls the orchestrators, because the DSN is read once at start. The live
ConfigMap is deliberately left out (see templates/live-config/configmap.yaml).
*/}}
{{- define "ai-agents.orchestratorRestartChecksum" -}}
{{- $pg := .Values.store.postgresql -}}
{{- dict "dsn" .Values.store.dsn "existingSecret" .Values.store.existingSecret "existingSecretKey" .Values.store.existingSecretKey "username" $pg.username "database" $pg.database | toJson | sha256sum -}}
{{- end }}
