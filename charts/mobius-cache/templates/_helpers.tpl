{{/* Return the chart name, truncated to fit a DNS label. */}}
{{- define "mobius-cache.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Return the release-derived prefix of every resource name (leaves room for the "-redis-headless" suffix). */}}
{{- define "mobius-cache.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Return chart name and version for the helm.sh/chart label. */}}
{{- define "mobius-cache.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Return the labels of every resource; call with (dict "ctx" $ "component" "redis"). */}}
{{- define "mobius-cache.labels" -}}
{{ include "mobius-cache.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: mobius-cache
helm.sh/chart: {{ include "mobius-cache.chart" .ctx }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Return the labels a component's selector matches on; call with (dict "ctx" $ "component" "redis"). */}}
{{- define "mobius-cache.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mobius-cache.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Return the label key that admits a pod through the Redis NetworkPolicy. */}}
{{- define "mobius-cache.clientLabel" -}}
{{ include "mobius-cache.fullname" . }}-client
{{- end -}}

{{/* Return an image reference; call with the image values (repository, tag, digest) and the default tag. */}}
{{- define "mobius-cache.image" -}}
{{- $image := index . 0 -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default (index . 1) $image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Return the imagePullSecrets block, or nothing. */}}
{{- define "mobius-cache.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Return the name of the Redis StatefulSet and Service. */}}
{{- define "mobius-cache.redis.fullname" -}}
{{ include "mobius-cache.fullname" . }}-redis
{{- end -}}

{{/* Return the name of the operator's Deployment, ServiceAccount and RBAC objects. */}}
{{- define "mobius-cache.operator.fullname" -}}
{{ include "mobius-cache.fullname" . }}-operator
{{- end -}}

{{/* Return the name of the default CacheConfig. */}}
{{- define "mobius-cache.cacheConfig.name" -}}
{{ default (include "mobius-cache.fullname" .) .Values.cacheConfig.name }}
{{- end -}}

{{/* Return the Redis URL the operator, the default CacheConfig and the sidecars use. */}}
{{- define "mobius-cache.redis.url" -}}
{{- if .Values.redis.enabled -}}
redis://{{ include "mobius-cache.redis.fullname" . }}.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}:{{ .Values.redis.service.port }}/0
{{- else -}}
{{ .Values.externalRedis.url }}
{{- end -}}
{{- end -}}

{{/* Return the name of the Secret holding the Redis password ("" when Redis needs none). */}}
{{- define "mobius-cache.redis.secretName" -}}
{{- if .Values.redis.enabled -}}
{{- if .Values.redis.auth.enabled -}}
{{ default (include "mobius-cache.redis.fullname" .) .Values.redis.auth.existingSecret }}
{{- end -}}
{{- else -}}
{{ .Values.externalRedis.existingSecret }}
{{- end -}}
{{- end -}}

{{/* Return the key of the password inside the Redis Secret. */}}
{{- define "mobius-cache.redis.secretKey" -}}
{{- if .Values.redis.enabled -}}
{{ .Values.redis.auth.existingSecretPasswordKey }}
{{- else -}}
{{ .Values.externalRedis.existingSecretPasswordKey }}
{{- end -}}
{{- end -}}

{{/* Return env entries with the Redis password from the Secret under the given names (nothing without auth). */}}
{{- define "mobius-cache.redis.passwordEnv" -}}
{{- $secret := include "mobius-cache.redis.secretName" .ctx -}}
{{- if $secret }}
{{- range .names }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ include "mobius-cache.redis.secretKey" $.ctx }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Return the byte count of a Redis memory string: "k"/"m"/"g" are powers of 1000, "kb"/"mb"/"gb" of 1024. */}}
{{- define "mobius-cache.redisBytes" -}}
{{- $value := lower (toString .) -}}
{{- if not (regexMatch "^[0-9]+(b|k|kb|m|mb|g|gb)?$" $value) -}}
{{- fail (printf "invalid Redis memory size %q: use a byte count or a number with b, kb, mb or gb" $value) -}}
{{- end -}}
{{- $units := dict "" 1 "b" 1 "k" 1000 "kb" 1024 "m" 1000000 "mb" 1048576 "g" 1000000000 "gb" 1073741824 -}}
{{- $number := regexFind "^[0-9]+" $value -}}
{{- $unit := trimPrefix $number $value -}}
{{- mul (int64 $number) (get $units $unit) -}}
{{- end -}}

{{/* Return the byte count of a Kubernetes memory quantity ("1536Mi", "2G", "1.5Gi", "2147483648"). */}}
{{- define "mobius-cache.quantityBytes" -}}
{{- $value := toString . -}}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?(k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$" $value) -}}
{{- fail (printf "cannot read the memory quantity %q: use a number with an optional Ki, Mi, Gi, Ti, k, M, G or T suffix" $value) -}}
{{- end -}}
{{- $units := dict "" 1.0 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "Pi" 1125899906842624.0 "Ei" 1152921504606846976.0 -}}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $value -}}
{{- $unit := trimPrefix $number $value -}}
{{- mulf (float64 $number) (get $units $unit) | int64 -}}
{{- end -}}

{{/* Return every message of values that cannot work together, as one list; the caller fails once with all of them. */}}
{{- define "mobius-cache.validateValues" -}}
{{- $messages := list -}}
{{- if .Values.redis.enabled -}}
  {{- if .Values.externalRedis.url -}}
    {{- $messages = append $messages "redis.enabled is true and externalRedis.url is set: choose one (set redis.enabled=false to use the external Redis)" -}}
  {{- end -}}
  {{- $limit := dig "limits" "memory" "" .Values.redis.resources -}}
  {{- if not $limit -}}
    {{- $messages = append $messages "redis.resources.limits.memory is required: without a limit Redis's memory use cannot be bounded or checked against maxmemory" -}}
  {{- else -}}
    {{- $max := include "mobius-cache.redisBytes" .Values.redis.maxmemory | int64 -}}
    {{- $limitBytes := include "mobius-cache.quantityBytes" $limit | int64 -}}
    {{- /* Redis needs room above maxmemory (fragmentation, buffers, fork): keep maxmemory <= 80% of the limit. */ -}}
    {{- if gt (mul $max 5) (mul $limitBytes 4) -}}
      {{- $need := div (add (mul $max 5) (sub (mul 4 1048576) 1)) (mul 4 1048576) -}}
      {{- $messages = append $messages (printf "redis.maxmemory %s (%d bytes) leaves less than 20%% headroom below redis.resources.limits.memory %s (%d bytes): Redis would be OOM-killed before it evicts. Raise limits.memory to at least %dMi or lower maxmemory to at most 80%% of the limit" (toString .Values.redis.maxmemory) $max (toString $limit) $limitBytes $need) -}}
    {{- end -}}
  {{- end -}}
  {{- $managed := list "maxmemory" "maxmemory-policy" "requirepass" "masterauth" "port" "bind" "dir" "protected-mode" "save" "appendonly" "appendfsync" "daemonize" "include" "rename-command" -}}
  {{- range $key, $_ := .Values.redis.extraConfig -}}
    {{- if has $key $managed -}}
      {{- $messages = append $messages (printf "redis.extraConfig.%s is set by the chart itself: use the typed value for it (redis.maxmemory, redis.maxmemoryPolicy, redis.auth, redis.persistence, redis.service.port)" $key) -}}
    {{- end -}}
  {{- end -}}
  {{- if and .Values.redis.auth.existingSecret .Values.redis.auth.password -}}
    {{- $messages = append $messages "redis.auth.existingSecret and redis.auth.password are both set: choose one" -}}
  {{- end -}}
{{- else -}}
  {{- if not .Values.externalRedis.url -}}
    {{- $messages = append $messages "redis.enabled is false: set externalRedis.url (redis://, rediss://, redis+cluster:// or rediss+cluster://) to the Redis to use" -}}
  {{- end -}}
{{- end -}}
{{- if and .Values.sidecar.metricsPort (eq (int .Values.sidecar.metricsPort) (int .Values.sidecar.port)) -}}
  {{- $messages = append $messages (printf "sidecar.metricsPort (%v) must differ from sidecar.port: the metrics-only listener is a second port" .Values.sidecar.metricsPort) -}}
{{- end -}}
{{- if and (include "mobius-cache.injector.enabled" .) (semverCompare "<1.29-0" .Capabilities.KubeVersion.Version) -}}
  {{- $messages = append $messages (printf "injector.enabled needs Kubernetes 1.29 or newer (native sidecars), this cluster is %s: set injector.enabled=false and add the sidecar by hand (see the chart README)" .Capabilities.KubeVersion.Version) -}}
{{- end -}}
{{- if and .Values.monitoring.podMonitor.enabled (not .Values.sidecar.metricsPort) -}}
  {{- $messages = append $messages "monitoring.podMonitor.enabled needs sidecar.metricsPort: the sidecar's API port is loopback only, Prometheus can scrape only the metrics port" -}}
{{- end -}}
{{- if gt (int64 .Values.cacheConfig.defaultTTL) (int64 .Values.cacheConfig.maxTTL) -}}
  {{- $messages = append $messages (printf "cacheConfig.defaultTTL (%v) must not exceed cacheConfig.maxTTL (%v)" .Values.cacheConfig.defaultTTL .Values.cacheConfig.maxTTL) -}}
{{- end -}}
{{- if $messages -}}
{{- printf "\n\nVALUES VALIDATION:\n- %s\n" (join "\n- " $messages) -}}
{{- end -}}
{{- end -}}

{{/* Return the operator's rules on namespaced objects (a ClusterRole's or a Role's, by operator.scope). */}}
{{- define "mobius-cache.operator.rules" }}
  - apiGroups: [cache.mobius.io]
    resources: [cacheconfigs]
    verbs: [get, list, watch, patch]
  - apiGroups: [cache.mobius.io]
    resources: [cacheconfigs/status]
    verbs: [patch]
  - apiGroups: [""]
    resources: [configmaps]
    verbs: [get, create, patch]
  - apiGroups: [""]
    resources: [secrets]
    verbs: [get]
  - apiGroups: [""]
    resources: [events]
    verbs: [create]
{{- end }}

{{/* Return the sidecar container of a pod without the injector; mobius_operator.injection builds the same one (a chart test compares them). */}}
{{- define "mobius-cache.sidecar.container" -}}
{{- $probe := printf "import sys,urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:%d%%s', timeout=2).status != 200)" (int .Values.sidecar.port) -}}
- name: mobius-sidecar
  image: {{ include "mobius-cache.image" (list .Values.sidecar.image .Chart.AppVersion) }}
  imagePullPolicy: {{ .Values.sidecar.image.pullPolicy }}
  command: [mobius-sidecar]
  env:
    - name: MOBIUS_REDIS_URL
      value: {{ include "mobius-cache.redis.url" . | quote }}
    {{- include "mobius-cache.redis.passwordEnv" (dict "ctx" . "names" (list "MOBIUS_REDIS_PASSWORD")) | nindent 4 }}
    - name: MOBIUS_POLICY_FILE
      value: /etc/mobius/policy/policy.json
    - name: MOBIUS_SIDECAR_HOST
      value: 127.0.0.1
    - name: MOBIUS_SIDECAR_PORT
      value: {{ .Values.sidecar.port | quote }}
    {{- if .Values.sidecar.metricsPort }}
    # Only /metrics and /healthz on the pod IP, for Prometheus; the API above stays on loopback.
    - name: MOBIUS_SIDECAR_METRICS_HOST
      value: 0.0.0.0
    - name: MOBIUS_SIDECAR_METRICS_PORT
      value: {{ .Values.sidecar.metricsPort | quote }}
  ports:
    - name: mobius-metrics
      containerPort: {{ .Values.sidecar.metricsPort }}
      protocol: TCP
    {{- end }}
  # The API listens on loopback only, where the kubelet's HTTP probes cannot reach: the probes run inside the
  # container instead. /readyz stays 200 while Redis is down (the app must not leave its Service for that).
  livenessProbe:
    exec:
      command: [python, -c, {{ printf $probe "/healthz" | quote }}]
    periodSeconds: 10
    timeoutSeconds: 3
  readinessProbe:
    exec:
      command: [python, -c, {{ printf $probe "/readyz" | quote }}]
    periodSeconds: 5
    timeoutSeconds: 3
  resources:
    {{- toYaml .Values.sidecar.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.sidecar.containerSecurityContext | nindent 4 }}
  volumeMounts:
    - name: mobius-policy
      mountPath: /etc/mobius/policy
      readOnly: true
    - name: mobius-tmp
      mountPath: /tmp
{{- end -}}

{{/* Return the volumes the sidecar container mounts: the operator's policy ConfigMap and a scratch /tmp. */}}
{{- define "mobius-cache.sidecar.volumes" -}}
- name: mobius-policy
  configMap:
    name: {{ include "mobius-cache.cacheConfig.name" . }}-policy
    # The operator writes it after the CacheConfig exists; the kubelet fills the volume in when it appears.
    optional: true
- name: mobius-tmp
  emptyDir:
    medium: Memory
    sizeLimit: 16Mi
{{- end -}}

{{/* Return the release's default CacheConfig as JSON {name, spec, labels}: the operator creates it and owns it. */}}
{{- define "mobius-cache.cacheConfig.default" -}}
{{- $secret := include "mobius-cache.redis.secretName" . }}
{{- $spec := dict "redis" (dict "url" (include "mobius-cache.redis.url" .)) }}
{{- if $secret }}
{{- $_ := set $spec.redis "passwordSecretRef" (dict "name" $secret "key" (include "mobius-cache.redis.secretKey" .)) }}
{{- end }}
{{- $_ := set $spec "maxMemory" (toString (default .Values.redis.maxmemory .Values.cacheConfig.maxMemory)) }}
{{- $_ = set $spec "evictionPolicy" (default .Values.redis.maxmemoryPolicy .Values.cacheConfig.evictionPolicy) }}
{{- $_ = set $spec "defaultTTL" (int64 .Values.cacheConfig.defaultTTL) }}
{{- $_ = set $spec "maxTTL" (int64 .Values.cacheConfig.maxTTL) }}
{{- $_ = set $spec "keyPrefix" .Values.cacheConfig.keyPrefix }}
{{- with .Values.cacheConfig.strategies }}
{{- $_ = set $spec "strategies" . }}
{{- end }}
{{- $labels := include "mobius-cache.labels" (dict "ctx" . "component" "cacheconfig") | fromYaml }}
{{- $_ = set $labels "app.kubernetes.io/managed-by" "mobius-operator" }}
{{- dict "name" (include "mobius-cache.cacheConfig.name" .) "spec" $spec "labels" $labels | toJson }}
{{- end }}

{{/* Return "true" when the sidecar injector runs (it lives in the operator), else nothing. */}}
{{- define "mobius-cache.injector.enabled" -}}
{{- if and .Values.operator.enabled .Values.injector.enabled -}}true{{- end -}}
{{- end -}}

{{/* Return the name of the Secret with the webhook server's TLS certificate. */}}
{{- define "mobius-cache.injector.tlsSecretName" -}}
{{ include "mobius-cache.operator.fullname" . }}-webhook-tls
{{- end -}}

{{/* Return the operator's MOBIUS_INJECTOR_* env entries: what every injected sidecar gets (settings.InjectorSettings). */}}
{{- define "mobius-cache.injector.env" -}}
- name: MOBIUS_INJECTOR_ENABLED
  value: "true"
- name: MOBIUS_INJECTOR_LISTEN_HOST
  value: 0.0.0.0
- name: MOBIUS_INJECTOR_LISTEN_PORT
  value: {{ .Values.injector.port | quote }}
- name: MOBIUS_INJECTOR_CERT_FILE
  value: /etc/mobius/webhook/tls.crt
- name: MOBIUS_INJECTOR_KEY_FILE
  value: /etc/mobius/webhook/tls.key
- name: MOBIUS_INJECTOR_FAILURE_POLICY
  value: {{ .Values.injector.failurePolicy }}
- name: MOBIUS_INJECTOR_IMAGE
  value: {{ include "mobius-cache.image" (list .Values.sidecar.image .Chart.AppVersion) | quote }}
- name: MOBIUS_INJECTOR_IMAGE_PULL_POLICY
  value: {{ .Values.sidecar.image.pullPolicy }}
- name: MOBIUS_INJECTOR_PORT
  value: {{ .Values.sidecar.port | quote }}
- name: MOBIUS_INJECTOR_METRICS_PORT
  value: {{ .Values.sidecar.metricsPort | quote }}
- name: MOBIUS_INJECTOR_RESOURCES
  value: {{ .Values.sidecar.resources | toJson | quote }}
- name: MOBIUS_INJECTOR_SECURITY_CONTEXT
  value: {{ .Values.sidecar.containerSecurityContext | toJson | quote }}
- name: MOBIUS_INJECTOR_CLIENT_LABEL
  value: {{ include "mobius-cache.clientLabel" . }}
- name: MOBIUS_INJECTOR_REDIS_URL
  value: {{ include "mobius-cache.redis.url" . | quote }}
- name: MOBIUS_INJECTOR_REDIS_SECRET_NAME
  value: {{ include "mobius-cache.redis.secretName" . | quote }}
- name: MOBIUS_INJECTOR_REDIS_SECRET_KEY
  value: {{ include "mobius-cache.redis.secretKey" . | quote }}
- name: MOBIUS_INJECTOR_DEFAULT_CONFIG
  value: {{ include "mobius-cache.cacheConfig.name" . }}
- name: MOBIUS_INJECTOR_LOOKUP_TIMEOUT
  value: {{ sub .Values.injector.timeoutSeconds 1 | quote }}
{{- end -}}
