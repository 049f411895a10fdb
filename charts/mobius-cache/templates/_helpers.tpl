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

{{/* Return the Redis user name of a role (cache, operator, exporter, replication, sentinel, admin). */}}
{{- define "mobius-cache.redis.user" -}}
mobius-{{ . }}
{{- end -}}

{{/* Return the roles whose Redis users the architecture needs (each has a key in the password Secret). */}}
{{- define "mobius-cache.redis.roles" -}}
{{- $roles := list "cache" "operator" "exporter" -}}
{{- if ne .Values.redis.architecture "standalone" -}}
{{- $roles = append $roles "replication" -}}
{{- end -}}
{{- if eq .Values.redis.architecture "replication" -}}
{{- $roles = append $roles "sentinel" -}}
{{- end -}}
{{- if eq .Values.redis.architecture "cluster" -}}
{{- $roles = append $roles "admin" -}}
{{- end -}}
{{- join " " $roles -}}
{{- end -}}

{{/* Return the number of Redis pods: 1, 1 + redis.replicas, or shards x (1 + replicasPerShard). */}}
{{- define "mobius-cache.redis.nodeCount" -}}
{{- if eq .Values.redis.architecture "replication" -}}
{{- add1 (int .Values.redis.replicas) -}}
{{- else if eq .Values.redis.architecture "cluster" -}}
{{- mul (int .Values.redis.cluster.shards) (add1 (int .Values.redis.cluster.replicasPerShard)) -}}
{{- else -}}
1
{{- end -}}
{{- end -}}

{{/* Return the Sentinel quorum: a majority of the Sentinels (one per Redis pod). */}}
{{- define "mobius-cache.redis.sentinelQuorum" -}}
{{- add1 (div (int (include "mobius-cache.redis.nodeCount" .)) 2) -}}
{{- end -}}

{{/* Return the DNS suffix of the Redis pods: <headless service>.<namespace>.svc.<cluster domain>. */}}
{{- define "mobius-cache.redis.headlessDomain" -}}
{{ include "mobius-cache.redis.fullname" . }}-headless.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}
{{- end -}}

{{/* Return the DNS names of every Redis pod, space separated, with a port: call with (dict "ctx" $ "port" 6379). */}}
{{- define "mobius-cache.redis.podAddresses" -}}
{{- $ctx := .ctx -}}
{{- $out := list -}}
{{- range $i := until (int (include "mobius-cache.redis.nodeCount" $ctx)) -}}
{{- $out = append $out (printf "%s-%d.%s:%v" (include "mobius-cache.redis.fullname" $ctx) $i (include "mobius-cache.redis.headlessDomain" $ctx) $.port) -}}
{{- end -}}
{{- join " " $out -}}
{{- end -}}

{{/* Return where the Redis CA certificate is mounted in clients (sidecars, operator, helm test, keeper). */}}
{{- define "mobius-cache.redis.caPath" -}}
/etc/mobius/redis-ca/ca.crt
{{- end -}}

{{/* Return the name of the Secret with the Redis server certificate (tls.crt, tls.key, ca.crt). */}}
{{- define "mobius-cache.redis.tlsSecretName" -}}
{{ default (printf "%s-tls" (include "mobius-cache.redis.fullname" .)) .Values.redis.tls.existingSecret }}
{{- end -}}

{{/* Return whether clients talk TLS to Redis ("true" or ""): the chart's Redis with TLS, or a rediss:// external one. */}}
{{- define "mobius-cache.redis.tls" -}}
{{- if .Values.redis.enabled -}}
{{- if .Values.redis.tls.enabled }}true{{ end -}}
{{- else if hasPrefix "rediss" .Values.externalRedis.url -}}
true
{{- end -}}
{{- end -}}

{{/* Return the URL of the chart's Redis for a role: call with (dict "ctx" $ "role" "cache" "caQuery" true).
     standalone: redis://user@<service>:port/0; cluster: redis+cluster://...; replication: the Sentinel form
     redis+sentinel://user@<sentinel service>:port/<master>/0. rediss with TLS; caQuery adds ?ssl_ca_certs=. */}}
{{- define "mobius-cache.redis.roleUrl" -}}
{{- $ctx := .ctx -}}
{{- $v := $ctx.Values.redis -}}
{{- $user := "" -}}
{{- if $v.auth.enabled -}}{{- $user = printf "%s@" (include "mobius-cache.redis.user" .role) -}}{{- end -}}
{{- $scheme := ternary "rediss" "redis" $v.tls.enabled -}}
{{- $svc := printf "%s.%s.svc.%s" (include "mobius-cache.redis.fullname" $ctx) $ctx.Release.Namespace $ctx.Values.clusterDomain -}}
{{- if eq $v.architecture "replication" -}}
{{ $scheme }}+sentinel://{{ $user }}{{ include "mobius-cache.redis.fullname" $ctx }}-sentinel.{{ $ctx.Release.Namespace }}.svc.{{ $ctx.Values.clusterDomain }}:{{ $v.sentinel.port }}/{{ $v.sentinel.masterName }}/0
{{- else if eq $v.architecture "cluster" -}}
{{ $scheme }}+cluster://{{ $user }}{{ $svc }}:{{ $v.service.port }}/0
{{- else -}}
{{ $scheme }}://{{ $user }}{{ $svc }}:{{ $v.service.port }}/0
{{- end -}}
{{- if and $v.tls.enabled .caQuery -}}
?ssl_ca_certs={{ include "mobius-cache.redis.caPath" $ctx }}
{{- end -}}
{{- end -}}

{{/* Return the Redis URL the sidecars and the library use (as the cache user; the CA in the query with TLS). */}}
{{- define "mobius-cache.redis.url" -}}
{{- if .Values.redis.enabled -}}
{{ include "mobius-cache.redis.roleUrl" (dict "ctx" . "role" "cache" "caQuery" true) }}
{{- else -}}
{{ .Values.externalRedis.url }}
{{- end -}}
{{- end -}}

{{/* Return the name of the Secret holding the Redis passwords ("" when Redis needs none). */}}
{{- define "mobius-cache.redis.secretName" -}}
{{- if .Values.redis.enabled -}}
{{- if .Values.redis.auth.enabled -}}
{{ default (include "mobius-cache.redis.fullname" .) .Values.redis.auth.existingSecret }}
{{- end -}}
{{- else -}}
{{ .Values.externalRedis.existingSecret }}
{{- end -}}
{{- end -}}

{{/* Return the key of a role's password in the Redis Secret: the user's name (call with (dict "ctx" $ "role" "operator"), or with $ for the cache user). */}}
{{- define "mobius-cache.redis.secretKey" -}}
{{- $ctx := .ctx | default . -}}
{{- if $ctx.Values.redis.enabled -}}
{{ include "mobius-cache.redis.user" (.role | default "cache") }}
{{- else -}}
{{ $ctx.Values.externalRedis.existingSecretPasswordKey }}
{{- end -}}
{{- end -}}

{{/* Return env entries with a role's Redis password (default: the cache user's) under the given names, nothing without auth:
     (dict "ctx" $ "names" (list "MOBIUS_REDIS_PASSWORD") "role" "cache"). */}}
{{- define "mobius-cache.redis.passwordEnv" -}}
{{- $secret := include "mobius-cache.redis.secretName" .ctx -}}
{{- if $secret }}
{{- range .names }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ include "mobius-cache.redis.secretKey" (dict "ctx" $.ctx "role" ($.role | default "cache")) }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Return the volume with the Redis CA certificate for clients (nothing without TLS). */}}
{{- define "mobius-cache.redis.caVolume" -}}
{{- if and .Values.redis.enabled .Values.redis.tls.enabled }}
- name: mobius-redis-ca
  {{- if .Values.redis.tls.existingSecret }}
  # Only ca.crt of the server's Secret: a client never sees the server's key.
  secret:
    secretName: {{ .Values.redis.tls.existingSecret }}
    items:
      - {key: ca.crt, path: ca.crt}
  {{- else }}
  configMap:
    name: {{ include "mobius-cache.redis.fullname" . }}-ca
  {{- end }}
{{- end }}
{{- end -}}

{{/* Return the mount of that volume (nothing without TLS). */}}
{{- define "mobius-cache.redis.caMount" -}}
{{- if and .Values.redis.enabled .Values.redis.tls.enabled }}
- name: mobius-redis-ca
  mountPath: {{ dir (include "mobius-cache.redis.caPath" .) }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* Return the key patterns of the cache user: ~* or one ~<prefix>* per redis.acl.cacheKeyPrefixes entry. */}}
{{- define "mobius-cache.redis.acl.cacheKeys" -}}
{{- $out := list -}}
{{- range .Values.redis.acl.cacheKeyPrefixes -}}
{{- $out = append $out (printf "~%s*" .) -}}
{{- end -}}
{{- join " " (default (list "~*") $out) -}}
{{- end -}}

{{/* Return the channel patterns of the cache user (its events channel is <prefix>events). */}}
{{- define "mobius-cache.redis.acl.cacheChannels" -}}
{{- $out := list -}}
{{- range .Values.redis.acl.cacheKeyPrefixes -}}
{{- $out = append $out (printf "&%s*" .) -}}
{{- end -}}
{{- join " " (default (list "&*") $out) -}}
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
  {{- $managed := list "maxmemory" "maxmemory-policy" "requirepass" "masterauth" "masteruser" "aclfile" "user" "port" "bind" "dir" "protected-mode" "save" "appendonly" "appendfsync" "daemonize" "include" "rename-command" "replicaof" "slaveof" "replica-announce-ip" "replica-announce-port" "enable-protected-configs" "enable-debug-command" "enable-module-command" "cluster-enabled" "cluster-config-file" "cluster-node-timeout" "cluster-announce-hostname" "cluster-preferred-endpoint-type" -}}
  {{- range $key, $_ := .Values.redis.extraConfig -}}
    {{- if or (has $key $managed) (hasPrefix "tls-" $key) -}}
      {{- $messages = append $messages (printf "redis.extraConfig.%s is set by the chart itself: use the typed value for it (redis.maxmemory, redis.maxmemoryPolicy, redis.auth, redis.tls, redis.persistence, redis.service.port, redis.architecture, redis.cluster)" $key) -}}
    {{- end -}}
  {{- end -}}
  {{- $arch := .Values.redis.architecture -}}
  {{- if and (eq $arch "cluster") (gt (int .Values.redis.service.port) 55535) -}}
    {{- $messages = append $messages (printf "redis.service.port %v is too high for a Redis Cluster: its bus port is the port + 10000 (at most 65535)" .Values.redis.service.port) -}}
  {{- end -}}
  {{- with .Values.redis.acl.cacheKeyPrefixes -}}
    {{- $prefix := $.Values.cacheConfig.keyPrefix -}}
    {{- $covered := false -}}
    {{- range . -}}{{- if hasPrefix . $prefix -}}{{- $covered = true -}}{{- end -}}{{- end -}}
    {{- if not $covered -}}
      {{- $messages = append $messages (printf "cacheConfig.keyPrefix %q is outside redis.acl.cacheKeyPrefixes %v: the cache user could not touch its own keys" $prefix .) -}}
    {{- end -}}
  {{- end -}}
  {{- /* What runs already (empty with helm template / --dry-run): an architecture change or a scale-in would lose data. */ -}}
  {{- $running := lookup "apps/v1" "StatefulSet" .Release.Namespace (include "mobius-cache.redis.fullname" .) -}}
  {{- if $running -}}
    {{- $was := dig "metadata" "annotations" "cache.mobius.io/architecture" "standalone" $running -}}
    {{- $had := int (dig "spec" "replicas" 1 $running) -}}
    {{- $want := int (include "mobius-cache.redis.nodeCount" .) -}}
    {{- if ne $was $arch -}}
      {{- $messages = append $messages (printf "redis.architecture: this release runs %s; changing it to %s in place is not supported (the pods, their roles and the data layout differ): install a new release and move the clients to it" $was $arch) -}}
    {{- else if and (ne $arch "standalone") (lt $want $had) -}}
      {{- $messages = append $messages (printf "the %s would shrink from %d to %d Redis pods: scaling in is refused (the pods removed could be masters, and Sentinels remember the ones that left); keep redis.replicas / redis.cluster.shards / replicasPerShard, or move to a new release" $arch $had $want) -}}
    {{- end -}}
  {{- end -}}
{{- else -}}
  {{- if not .Values.externalRedis.url -}}
    {{- $messages = append $messages "redis.enabled is false: set externalRedis.url (redis://, rediss://, redis+cluster://, rediss+cluster:// or redis+sentinel://) to the Redis to use" -}}
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
{{- with .Values.exporter.keyGroups -}}
  {{- if gt (include "mobius-cache.durationMs" .scrapeTimeout | int64) (include "mobius-cache.durationMs" .interval | int64) -}}
    {{- $messages = append $messages (printf "exporter.keyGroups.scrapeTimeout (%s) must not exceed exporter.keyGroups.interval (%s): Prometheus refuses such a scrape configuration" .scrapeTimeout .interval) -}}
  {{- end -}}
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
    {{- include "mobius-cache.redis.caMount" . | nindent 4 }}
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
{{- include "mobius-cache.redis.caVolume" . }}
{{- end -}}

{{/* Return the release's default CacheConfig as JSON {name, spec, labels}: the operator creates it and owns it. */}}
{{- define "mobius-cache.cacheConfig.default" -}}
{{- $secret := include "mobius-cache.redis.secretName" . }}
{{- /* url + passwordSecretRef: the clients' login (injected sidecars use it); admin: the operator's own ACL user.
       No ?ssl_ca_certs= query (the CRD takes none): the operator trusts the CA through SSL_CERT_FILE. */}}
{{- $url := .Values.externalRedis.url }}
{{- if .Values.redis.enabled }}
{{- $url = include "mobius-cache.redis.roleUrl" (dict "ctx" . "role" "cache" "caQuery" false) }}
{{- end }}
{{- $spec := dict "redis" (dict "url" $url) }}
{{- if $secret }}
{{- $_ := set $spec.redis "passwordSecretRef" (dict "name" $secret "key" (include "mobius-cache.redis.secretKey" .)) }}
{{- if .Values.redis.enabled }}
{{- $admin := dict "username" (include "mobius-cache.redis.user" "operator") "passwordSecretRef" (dict "name" $secret "key" (include "mobius-cache.redis.secretKey" (dict "ctx" . "role" "operator"))) }}
{{- $_ = set $spec.redis "admin" $admin }}
{{- end }}
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
- name: MOBIUS_INJECTOR_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- if .Values.example.enabled }}
# The example app is created in the same moment as the injector: restarted once if it missed the sidecar.
- name: MOBIUS_INJECTOR_RESTART_UNINJECTED
  value: {{ list (printf "%s-example" (include "mobius-cache.fullname" .)) | toJson | quote }}
{{- end }}
- name: MOBIUS_INJECTOR_REDIS_URL
  value: {{ include "mobius-cache.redis.url" . | quote }}
- name: MOBIUS_INJECTOR_REDIS_SECRET_NAME
  value: {{ include "mobius-cache.redis.secretName" . | quote }}
- name: MOBIUS_INJECTOR_REDIS_SECRET_KEY
  value: {{ include "mobius-cache.redis.secretKey" . | quote }}
{{- with include "mobius-cache.redis.caVolume" . | fromYamlArray }}
- name: MOBIUS_INJECTOR_REDIS_CA_VOLUME
  value: {{ omit (first .) "name" | toJson | quote }}
{{- end }}
- name: MOBIUS_INJECTOR_DEFAULT_CONFIG
  value: {{ include "mobius-cache.cacheConfig.name" . }}
- name: MOBIUS_INJECTOR_LOOKUP_TIMEOUT
  value: {{ sub .Values.injector.timeoutSeconds 1 | quote }}
{{- end -}}

{{/* Return the label (key: value) that marks the chart's example app pods (the webhook sends them to its Fail entry). */}}
{{- define "mobius-cache.exampleLabel" -}}
cache.mobius.io/example-app: {{ include "mobius-cache.fullname" . | quote }}
{{- end -}}
