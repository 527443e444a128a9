{{/*
The agent types the runtime knows, in the order every chart renders them (docs/contracts.md).
Usage: include "ai-agents-lib.agentTypes" . | fromJsonArray  (the argument is unused)
*/}}
{{- define "ai-agents-lib.agentTypes" -}}
{{- list "coding" "testing" "security" "compliance" "documentation" "discovery" | toJson -}}
{{- end }}

{{/*
The one switch of an agent type: global.agents.<type>.enabled, true when unset. It is a global value because
the umbrella (Deployments, Services, ServiceAccounts), keda-scalers (ScaledObjects) and mesh (policies,
DestinationRules) must all see the same answer, and a subchart reads no other value of its parent.
A type under global.agents that the runtime does not know fails instead of being ignored.
Returns the enabled types as a JSON list, in ai-agents-lib.agentTypes order.
Usage: include "ai-agents-lib.enabledAgentTypes" $ | fromJsonArray
*/}}
{{- define "ai-agents-lib.enabledAgentTypes" -}}
{{- $known := include "ai-agents-lib.agentTypes" . | fromJsonArray -}}
{{- $switches := (.Values.global).agents | default dict -}}
{{- range $type, $_ := $switches -}}
{{- if not (has $type $known) -}}
{{- fail (printf "global.agents.%s: unknown agent type; the agent types are %s" $type (join ", " $known)) -}}
{{- end -}}
{{- end -}}
{{- $enabled := list -}}
{{- range $type := $known -}}
{{- if dig $type "enabled" true $switches -}}
{{- $enabled = append $enabled $type -}}
{{- end -}}
{{- end -}}
{{- toJson $enabled -}}
{{- end }}

{{/*
Checks a chart's own, older per-type switch against the one switch. Those keys (agents.<type>.enabled,
kedaScalers.agents.<type>.enabled, mesh.agentTypes) turned a type on in one chart only; a value there that
disagrees with global.agents.<type>.enabled would render a ScaledObject or a policy for a Deployment that does
not exist (or the reverse), so it fails, naming both keys. An unset key (null) is not checked.
Usage: include "ai-agents-lib.checkAgentSwitch" (dict "root" $ "type" "coding" "value" $old "key" "agents.coding.enabled")
*/}}
{{- define "ai-agents-lib.checkAgentSwitch" -}}
{{- if not (kindIs "invalid" .value) -}}
{{- $enabled := has .type (include "ai-agents-lib.enabledAgentTypes" .root | fromJsonArray) -}}
{{- if ne (toString .value) (toString $enabled) -}}
{{- fail (printf "%s is %v but global.agents.%s.enabled is %v: global.agents.%s.enabled is the one switch of the %s agents (Deployment, ScaledObject, mesh policy); set it and remove %s" .key .value .type $enabled .type .type .key) -}}
{{- end -}}
{{- end -}}
{{- end }}
