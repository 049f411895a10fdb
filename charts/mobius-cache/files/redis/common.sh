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
    rules=$1 out=$2
    umask 077
    : >"$out.tmp"
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in
            '' | '#'*) continue ;;
            'user '*) ;;
            *) die "$rules: not a user line: $line" ;;
        esac
        rest=${line#user }
        name=${rest%% *}
        acl=${rest#"$name"}
        case " $acl " in
            *' off '* | *' nopass '*) printf 'user %s%s\n' "$name" "$acl" >>"$out.tmp" ;;
            *)
                pwfile=$(password_file "$name") || exit 1
                hash=$(sha256sum <"$pwfile" | cut -d' ' -f1)
                printf 'user %s #%s%s\n' "$name" "$hash" "$acl" >>"$out.tmp"
                ;;
        esac
    done <"$rules"
    mv "$out.tmp" "$out"
}

# redis-cli to host $1 port $2, over TLS when MOBIUS_REDIS_TLS_CA is set; the rest are the command.
# Logs in as $MOBIUS_REDIS_CLI_USER (password from REDISCLI_AUTH) when that is set.
cli() {
    host=$1 port=$2
    shift 2
    set -- -h "$host" -p "$port" --no-auth-warning "$@"
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
    for address in ${MOBIUS_SENTINEL_ADDRESSES:-}; do
        reply=$(MOBIUS_REDIS_CLI_USER=''; cli "${address%:*}" "${address##*:}" \
            SENTINEL get-master-addr-by-name "$MOBIUS_SENTINEL_MASTER" 2>/dev/null) || continue
        host=$(echo "$reply" | sed -n 1p)
        port=$(echo "$reply" | sed -n 2p)
        if [ -n "$host" ] && [ -n "$port" ]; then
            echo "$host $port"
            return 0
        fi
    done
}
