{{/*
Object-name prefix `P` (docs/contracts.md): global.namePrefix, else the release name. Every chart of the
suite names its objects, and the objects of the others it refers to, `P-<suffix>`; one rule here keeps those
names equal. No truncation: a cut prefix would name objects nobody else can find, so a prefix longer than
ai-agents-lib.maxPrefixLength fails. That bound is what the longest name needs: the Service
`P-agent-documentation-headless` and KEDA's HPA `keda-hpa-P-agent-documentation` must fit a DNS label (63).
Usage: include "ai-agents-lib.prefix" $
*/}}
{{- define "ai-agents-lib.maxPrefixLength" -}}34{{- end }}

{{- define "ai-agents-lib.prefix" -}}
{{- $prefix := default .Release.Name ((.Values.global).namePrefix) | trimSuffix "-" -}}
{{- $max := include "ai-agents-lib.maxPrefixLength" . | int -}}
{{- if gt (len $prefix) $max -}}
{{- fail (printf "global.namePrefix (or the release name) %q is too long: %d characters, at most %d, so that every object name of the suite (e.g. %s-agent-documentation-headless) fits in 63" $prefix (len $prefix) $max $prefix) -}}
{{- end -}}
{{- $prefix -}}
{{- end }}

{{/*
`P-<suffix>`: the name of a component's objects. Still checked against 63 for suffixes longer than the
ones the prefix bound was chosen for.
Usage: include "ai-agents-lib.componentName" (dict "root" $ "suffix" "orchestrator")
*/}}
{{- define "ai-agents-lib.componentName" -}}
{{- $name := printf "%s-%s" (include "ai-agents-lib.prefix" .root) .suffix -}}
{{- if gt (len $name) 63 -}}
{{- fail (printf "global.namePrefix (or the release name) is too long: %q exceeds 63 characters; use a prefix of at most %s characters" $name (include "ai-agents-lib.maxPrefixLength" .root)) -}}
{{- end -}}
{{- $name -}}
{{- end }}

{{/*
Names of the umbrella's components that other charts refer to: the Deployment, Service and ServiceAccount
of an agent type (`P-agent-<type>`) and of the orchestrator (`P-orchestrator`).
Usage: include "ai-agents-lib.agentName" (dict "root" $ "type" "coding")
       include "ai-agents-lib.orchestratorName" (dict "root" $)
*/}}
{{- define "ai-agents-lib.agentName" -}}
{{- include "ai-agents-lib.componentName" (dict "root" .root "suffix" (printf "agent-%s" .type)) -}}
{{- end }}

{{- define "ai-agents-lib.orchestratorName" -}}
{{- include "ai-agents-lib.componentName" (dict "root" .root "suffix" "orchestrator") -}}
{{- end }}
