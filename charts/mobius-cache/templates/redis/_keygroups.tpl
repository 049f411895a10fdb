{{- /*
The key-group exporter: a second redis_exporter in the Redis pod that counts keys and their memory per cache
namespace with -check-key-groups. It is a container of its own because its scrape scans the whole keyspace
(seconds of Redis time per million keys): it needs its own, longer interval and timeout, and a slow scan must
never cost the main exporter's scrape (redis_up, memory, evictions). See docs/observability.md.
*/ -}}

{{/* Return the key-group Lua patterns as the exporter's CSV list: one per prefix, capturing prefix + namespace. */}}
{{- define "mobius-cache.exporter.keyGroupPatterns" -}}
{{- $patterns := list -}}
{{- range (.Values.exporter.keyGroups.prefixes | default (list .Values.cacheConfig.keyPrefix)) -}}
{{- /* Lua reads %x as a literal x for any non-alphanumeric x; CSV wants every field quoted, quotes doubled. */ -}}
{{- $literal := regexReplaceAll "([^A-Za-z0-9])" . "%${1}" -}}
{{- $patterns = append $patterns (printf "\"^(%s[^:]+):\"" (replace "\"" "\"\"" $literal)) -}}
{{- end -}}
{{- join "," $patterns -}}
{{- end -}}

{{/* Return the key-group exporter's environment (the same for every Redis node it runs next to). */}}
{{- define "mobius-cache.exporter.keyGroupsEnv" -}}
- name: REDIS_ADDR
  value: {{ ternary "rediss" "redis" .Values.redis.tls.enabled }}://localhost:{{ .Values.redis.service.port }}
- name: REDIS_EXPORTER_WEB_LISTEN_ADDRESS
  value: ":{{ .Values.exporter.keyGroups.port }}"
- name: REDIS_EXPORTER_CHECK_KEY_GROUPS
  value: {{ include "mobius-cache.exporter.keyGroupPatterns" . | quote }}
- name: REDIS_EXPORTER_MAX_DISTINCT_KEY_GROUPS
  value: {{ .Values.exporter.keyGroups.maxGroups | quote }}
- name: REDIS_EXPORTER_CHECK_KEYS_BATCH_SIZE
  value: {{ .Values.exporter.keyGroups.batchSize | quote }}
- name: REDIS_EXPORTER_REDIS_ONLY_METRICS
  value: "true"
# Per connection, read and write: each scan step answers in milliseconds; a hung Redis fails the scrape fast.
- name: REDIS_EXPORTER_CONNECTION_TIMEOUT
  value: 5s
# Only the INFO-like commands every scrape needs and the key-group scan (users.acl: mobius-exporter); no CONFIG.
- name: REDIS_EXPORTER_CONFIG_COMMAND
  value: "-"
{{- if .Values.redis.tls.enabled }}
- name: REDIS_EXPORTER_TLS_CA_CERT_FILE
  value: /etc/redis-tls/ca.crt
{{- end }}
{{- if include "mobius-cache.redis.secretName" . }}
- name: REDIS_USER
  value: {{ include "mobius-cache.redis.user" "exporter" }}
{{- include "mobius-cache.redis.passwordEnv" (dict "ctx" . "names" (list "REDIS_PASSWORD") "role" "exporter") }}
{{- end }}
{{- end -}}

{{/* Return the key-group exporter container, or nothing when it is off. */}}
{{- define "mobius-cache.exporter.keyGroupsContainer" -}}
{{- if and .Values.exporter.enabled .Values.exporter.keyGroups.enabled }}
- name: key-groups
  image: {{ include "mobius-cache.image" (list .Values.exporter.image "latest") }}
  imagePullPolicy: {{ .Values.exporter.image.pullPolicy }}
  env:
    {{- include "mobius-cache.exporter.keyGroupsEnv" . | nindent 4 }}
  ports:
    - name: key-groups
      containerPort: {{ .Values.exporter.keyGroups.port }}
  # No readinessProbe: a container that is not ready takes the whole Redis pod out of its Service.
  livenessProbe:
    httpGet:
      path: /health
      port: key-groups
    periodSeconds: 15
    timeoutSeconds: 3
  resources:
    {{- toYaml .Values.exporter.keyGroups.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.redis.containerSecurityContext | nindent 4 }}
  {{- if .Values.redis.tls.enabled }}
  volumeMounts:
    - name: tls
      mountPath: /etc/redis-tls
      readOnly: true
  {{- end }}
{{- end }}
{{- end -}}

{{/* Return the metric names the key-group endpoint keeps (everything else repeats the main exporter's). */}}
{{- define "mobius-cache.exporter.keyGroupMetrics" -}}
redis_(key_group_count|key_group_memory_usage_bytes|number_of_distinct_key_groups|last_key_groups_scrape_duration_milliseconds)
{{- end -}}

{{/* Return the milliseconds of a one-unit Prometheus duration ("90s", "2m"). */}}
{{- define "mobius-cache.durationMs" -}}
{{- $number := regexFind "^[0-9]+" . -}}
{{- mul (int64 $number) (get (dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000) (trimPrefix $number .)) -}}
{{- end -}}
