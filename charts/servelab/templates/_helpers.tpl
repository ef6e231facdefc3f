{{- define "servelab.fullname" -}}
{{- printf "%s-%s" .Release.Name "servelab" | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- define "servelab.labels" -}}
app.kubernetes.io/name: servelab
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
{{- define "servelab.selector" -}}
app.kubernetes.io/name: servelab
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
