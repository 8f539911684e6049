{{- define "autotts.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "autotts.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "autotts.engineName" -}}
{{- printf "%s-engine" (include "autotts.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "autotts.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "autotts.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "autotts.gatewaySelector" -}}
app.kubernetes.io/name: {{ include "autotts.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "autotts.engineSelector" -}}
app.kubernetes.io/name: {{ include "autotts.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: engine
{{- end }}

{{- define "autotts.adminSecretName" -}}
{{- default (printf "%s-admin" (include "autotts.fullname" .)) .Values.adminToken.existingSecret }}
{{- end }}

{{- define "autotts.servedModel" -}}
{{- default .Values.engine.model .Values.engine.servedModelName }}
{{- end }}

{{/* The gateway's config file: the YAML `autotts serve --config` reads (keys of GatewayConfig). */}}
{{- define "autotts.gatewayConfig" -}}
{{- $engine := include "autotts.engineName" . }}
{{- $cfg := dict
  "engine" .Values.engine.kind
  "model" (include "autotts.servedModel" .)
  "controller" .Values.gateway.controller
  "segment_tokens" .Values.gateway.segmentTokens
  "host" "0.0.0.0"
  "port" 8000 }}
{{- if gt (int .Values.engine.replicas) 1 }}
{{- $urls := list }}
{{- range $i := until (int .Values.engine.replicas) }}
{{- $urls = append $urls (printf "http://%s-%d.%s-peers:%v" $engine $i $engine $.Values.engine.port) }}
{{- end }}
{{- $_ := set $cfg "engine_urls" $urls }}
{{- else }}
{{- $_ := set $cfg "engine_url" (printf "http://%s:%v" $engine .Values.engine.port) }}
{{- end }}
{{- if .Values.controllers.artifacts }}
{{- $_ := set $cfg "controllers_dir" "/etc/autotts-controllers" }}
{{- $_ := set $cfg "allow_code" .Values.controllers.allowCode }}
{{- $_ := set $cfg "reload_interval_s" .Values.controllers.reloadSeconds }}
{{- end }}
{{- $_ := set $cfg "allow_unsandboxed" .Values.sandbox.allowUnsandboxed }}
{{- $_ := set $cfg "sandbox_spares" .Values.sandbox.spares }}
{{- if .Values.gateway.aliases }}
{{- $_ := set $cfg "aliases" .Values.gateway.aliases }}
{{- end }}
{{- if .Values.arms }}
{{- $_ := set $cfg "arms" .Values.arms }}
{{- end }}
{{- toYaml (merge (deepCopy .Values.gateway.config) $cfg) }}
{{- end }}
