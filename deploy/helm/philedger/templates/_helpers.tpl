{{/* Names and labels. */}}
{{- define "philedger.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "philedger.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "philedger.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The ledger.toml of the ConfigMap: the values' config, plus the rules file when given. */}}
{{- define "philedger.toml" -}}
{{- $config := deepCopy .Values.config -}}
{{- if .Values.rulesToml -}}
{{- $_ := set $config "rules_file" "/etc/philedger/compliance-rules.toml" -}}
{{- end -}}
{{- toToml $config -}}
{{- end -}}

{{/* Pod-level security: a fixed non-root user; secret files group-owned by it. */}}
{{- define "philedger.podSecurity" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.uid }}
runAsGroup: {{ .Values.securityContext.uid }}
fsGroup: {{ .Values.securityContext.uid }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "philedger.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* The init container that copies the mounted Secret into a memory-backed directory,
     mode 600 (the ledger refuses key files the group can read). */}}
{{- define "philedger.copySecrets" -}}
- name: copy-secrets
  image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command: ["/bin/sh", "-c", "install -m 0600 /secrets-in/* /run/secrets/philedger/"]
  securityContext:
    {{- include "philedger.containerSecurity" . | nindent 4 }}
  volumeMounts:
    - {name: secrets-in, mountPath: /secrets-in, readOnly: true}
    - {name: secrets, mountPath: /run/secrets/philedger}
{{- end -}}

{{- define "philedger.env" -}}
- {name: LEDGER_CONFIG_FILE, value: /etc/philedger/ledger.toml}
- {name: LEDGER_KAFKA_CREDENTIALS_DIR, value: /run/secrets/philedger}
- {name: PYTHONUNBUFFERED, value: "1"}
- {name: PYTHONDONTWRITEBYTECODE, value: "1"}
- {name: LEDGER_OPS_HOST, value: "0.0.0.0"}
- {name: LEDGER_OPS_PORT, value: {{ .Values.opsPort | quote }}}
{{- end -}}

{{- define "philedger.extraEnv" -}}
{{- range $name, $value := . }}
- {name: {{ $name }}, value: {{ $value | quote }}}
{{- end -}}
{{- end -}}

{{- define "philedger.mounts" -}}
- {name: config, mountPath: /etc/philedger/ledger.toml, subPath: ledger.toml, readOnly: true}
{{- if .Values.rulesToml }}
- {name: config, mountPath: /etc/philedger/compliance-rules.toml, subPath: compliance-rules.toml, readOnly: true}
{{- end }}
- {name: kafka-ca, mountPath: /etc/philedger/kafka-ca, readOnly: true}
- {name: secrets, mountPath: /run/secrets/philedger, readOnly: true}
- {name: tmp, mountPath: /tmp}
{{- end -}}

{{- define "philedger.volumes" -}}
- name: config
  configMap:
    name: {{ include "philedger.fullname" .root }}-config
- name: kafka-ca
  configMap:
    name: {{ .root.Values.kafkaCaConfigMap }}
- name: secrets-in
  secret:
    secretName: {{ .secret }}
    defaultMode: 0440
- name: secrets
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}
