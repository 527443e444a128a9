{{/*
The cluster's place in a multi-cluster mesh (docs/multi-cluster.md): global.multiCluster.clusterName, .meshID
and .network, read by every chart from this one place. Empty strings when unset (a single cluster).
They must equal the values the platform gave Istio (istiod `global.multiCluster.clusterName`, `global.meshID`,
`global.network`; ztunnel `multiCluster.clusterName`, `global.network`): the charts render them, they cannot
read them back from the cluster.
A network or mesh ID without a cluster name fails: both describe a cluster of a multi-cluster mesh, which is
known by its name (the `cluster` label of its metrics).
Returns a JSON object {"clusterName": .., "meshID": .., "network": ..}.
Usage: include "ai-agents-lib.multiCluster" $ | fromJson
*/}}
{{- define "ai-agents-lib.multiCluster" -}}
{{- $mc := (.Values.global).multiCluster | default dict -}}
{{- $out := dict "clusterName" (toString ($mc.clusterName | default "")) "meshID" (toString ($mc.meshID | default "")) "network" (toString ($mc.network | default "")) -}}
{{- if and (not $out.clusterName) (or $out.network $out.meshID) -}}
{{- fail (printf "global.multiCluster.clusterName is required when global.multiCluster.network (%q) or global.multiCluster.meshID (%q) is set: it names this cluster in the mesh and in the `cluster` label of its metrics" $out.network $out.meshID) -}}
{{- end -}}
{{- toJson $out -}}
{{- end }}

{{/*
Pod labels that place a pod on its Istio network: `topology.istio.io/network: <global.multiCluster.network>`.
Istio reads the network of a workload from this pod label first, then from the label of its own system
namespace (istio-system), so a pod carrying it stays on the right network even where that namespace is not
labelled. Nothing when no network is set. (Never put it on a Service: there it marks an east-west gateway.)
Usage: include "ai-agents-lib.networkPodLabels" $
*/}}
{{- define "ai-agents-lib.networkPodLabels" -}}
{{- with (include "ai-agents-lib.multiCluster" . | fromJson).network }}
topology.istio.io/network: {{ . | quote }}
{{- end }}
{{- end }}

{{/*
The SPIFFE trust domains a principal may come from: global.trustDomain (Istio's meshConfig.trustDomain,
default cluster.local) followed by global.trustDomainAliases (meshConfig.trustDomainAliases), without repeats.
In a multi-primary mesh whose clusters have their own trust domains, a peer in another cluster presents its
own domain; naming every alias in each principal admits it explicitly instead of relying on istiod rewriting
the policy.
Returns a JSON list.
Usage: include "ai-agents-lib.trustDomains" $ | fromJsonArray
*/}}
{{- define "ai-agents-lib.trustDomains" -}}
{{- $global := .Values.global | default dict -}}
{{- $domains := list (toString ($global.trustDomain | default "cluster.local")) -}}
{{- range $alias := $global.trustDomainAliases | default list -}}
{{- $domains = append $domains (toString $alias) -}}
{{- end -}}
{{- $domains | uniq | toJson -}}
{{- end }}

{{/*
SPIFFE principals (`<trust domain>/ns/<namespace>/sa/<service account>`) of one ServiceAccount, one per trust
domain of ai-agents-lib.trustDomains. Returns a JSON list.
Usage: include "ai-agents-lib.principals" (dict "root" $ "namespace" "ns" "sa" "name") | fromJsonArray
*/}}
{{- define "ai-agents-lib.principals" -}}
{{- $out := list -}}
{{- range $domain := include "ai-agents-lib.trustDomains" .root | fromJsonArray -}}
{{- $out = append $out (printf "%s/ns/%s/sa/%s" $domain $.namespace $.sa) -}}
{{- end -}}
{{- toJson $out -}}
{{- end }}
