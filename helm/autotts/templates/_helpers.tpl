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
{{- $cfg := dict
  "engine" .Values.engine.kind
  "engine_url" (printf "http://%s:%v" (include "autotts.engineName" .) .Values.engine.port)
  "model" (include "autotts.servedModel" .)
  "controller" .Values.gateway.controller
  "segment_tokens" .Values.gateway.segmentTokens
  "host" "0.0.0.0"
  "port" 8000 }}
{{- if .Values.gateway.aliases }}
{{- $_ := set $cfg "aliases" .Values.gateway.aliases }}
{{- end }}
{{- if .Values.arms }}
{{- $_ := set $cfg "arms" .Values.arms }}
{{- end }}
{{- toYaml (merge (deepCopy .Values.gateway.config) $cfg) }}
{{- end }}
