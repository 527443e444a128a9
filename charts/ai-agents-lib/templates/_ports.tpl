{{/*
The four named ports every runtime container listens on, and PostgreSQL's (docs/contracts.md). The agents,
the mesh policies and the NetworkPolicies must agree on them, so they are read from here.
Usage: include "ai-agents-lib.ports" . | fromJson  (the argument is unused)
*/}}
{{- define "ai-agents-lib.ports" -}}
{{- dict "http" 8080 "grpc" 9090 "metrics" 9091 "health" 8081 "postgresql" 5432 | toJson -}}
{{- end }}

{{/*
One of those ports by name; an unknown name fails rather than rendering an empty port.
Usage: include "ai-agents-lib.port" "grpc"
*/}}
{{- define "ai-agents-lib.port" -}}
{{- $ports := include "ai-agents-lib.ports" . | fromJson -}}
{{- if not (hasKey $ports .) -}}
{{- fail (printf "ai-agents-lib.port: unknown port %q; the ports are %s" . (keys $ports | sortAlpha | join ", ")) -}}
{{- end -}}
{{- index $ports . | int -}}
{{- end }}
