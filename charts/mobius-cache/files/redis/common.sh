# Shared by start-redis.sh, start-sentinel.sh and probe.sh (POSIX sh: busybox in the Alpine image, dash on
# Debian). Paths come from the environment so that the tests run these same scripts against local processes.
#
#   MOBIUS_REDIS_CONFIG_DIR     the chart's ConfigMap: redis.conf, users.acl, sentinel.conf, sentinel.acl
#   MOBIUS_REDIS_PASSWORDS_DIR  the Secret: one file per Redis user, named like the user (mobius-cache, ...)
#   MOBIUS_REDIS_RUN_DIR        a private memory-backed directory for the files written at start
#   MOBIUS_REDIS_TLS_CA         CA certificate: when set, redis-cli talks TLS (and checks the server's chain)

CONFIG_DIR=${MOBIUS_REDIS_CONFIG_DIR:-/etc/redis}
PASSWORDS_DIR=${MOBIUS_REDIS_PASSWORDS_DIR:-/etc/redis-passwords}
RUN_DIR=${MOBIUS_REDIS_RUN_DIR:-/run/mobius}

log() {
    echo "mobius-cache: $*" >&2
}

die() {
    log "$*"
    exit 1
}

# Print a value as a double-quoted redis.conf string (backslashes and quotes escaped).
conf_quote() {
    printf '"%s"' "$(printf '%s' "$1" | sed 's/[\\"]/\\&/g')"
}

# The password of a user, exactly as stored in the Secret (a trailing newline included, as clients send it).
password_file() {
    [ -f "$PASSWORDS_DIR/$1" ] || die "no password for Redis user $1: $PASSWORDS_DIR/$1 is missing (a key of the Secret?)"
    echo "$PASSWORDS_DIR/$1"
}

# Write an aclfile from a rules file: comments and blank lines dropped, and every user that is neither
# `off` nor `nopass` gets the SHA-256 of its password ("#<hex>"), so no password is written in clear.
write_aclfile() {
    # Variables start with _acl_: POSIX sh has no local variables, and callers use names like "name".
    _acl_rules=$1 _acl_out=$2
    umask 077
    : >"$_acl_out.tmp"
    while IFS= read -r _acl_line || [ -n "$_acl_line" ]; do
        case "$_acl_line" in
            '' | '#'*) continue ;;
            'user '*) ;;
            *) die "$_acl_rules: not a user line: $_acl_line" ;;
        esac
        _acl_rest=${_acl_line#user }
        _acl_user=${_acl_rest%% *}
        _acl_acl=${_acl_rest#"$_acl_user"}
        case " $_acl_acl " in
            *' off '* | *' nopass '*) printf 'user %s%s\n' "$_acl_user" "$_acl_acl" >>"$_acl_out.tmp" ;;
            *)
                _acl_file=$(password_file "$_acl_user") || exit 1
                _acl_hash=$(sha256sum <"$_acl_file" | cut -d' ' -f1)
                printf 'user %s #%s%s\n' "$_acl_user" "$_acl_hash" "$_acl_acl" >>"$_acl_out.tmp"
                ;;
        esac
    done <"$_acl_rules"
    mv "$_acl_out.tmp" "$_acl_out"
}

# redis-cli to host $1 port $2, over TLS when MOBIUS_REDIS_TLS_CA is set; the rest are the command.
# Logs in as $MOBIUS_REDIS_CLI_USER (password from REDISCLI_AUTH) when that is set.
cli() {
    _cli_host=$1 _cli_port=$2
    shift 2
    set -- -h "$_cli_host" -p "$_cli_port" --no-auth-warning "$@"
    if [ -n "${MOBIUS_REDIS_CLI_USER:-}" ]; then
        set -- --user "$MOBIUS_REDIS_CLI_USER" "$@"
    fi
    if [ -n "${MOBIUS_REDIS_TLS_CA:-}" ]; then
        set -- --tls --cacert "$MOBIUS_REDIS_TLS_CA" "$@"
    fi
    timeout "${MOBIUS_REDIS_CLI_TIMEOUT:-3}" redis-cli "$@"
}

# Print "host port" of the master the Sentinels agree on (the first one that answers), or nothing.
#   MOBIUS_SENTINEL_ADDRESSES  "host:port host:port ..."   MOBIUS_SENTINEL_MASTER  the monitored name
sentinel_master() {
    for _sm_address in ${MOBIUS_SENTINEL_ADDRESSES:-}; do
        _sm_reply=$(MOBIUS_REDIS_CLI_USER=''; cli "${_sm_address%:*}" "${_sm_address##*:}" \
            SENTINEL get-master-addr-by-name "$MOBIUS_SENTINEL_MASTER" 2>/dev/null) || continue
        _sm_host=$(echo "$_sm_reply" | sed -n 1p)
        _sm_port=$(echo "$_sm_reply" | sed -n 2p)
        if [ -n "$_sm_host" ] && [ -n "$_sm_port" ]; then
            echo "$_sm_host $_sm_port"
            return 0
        fi
    done
}
