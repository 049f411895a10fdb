#!/bin/sh
# The Redis container's probes: `probe.sh live` (answers PING) and `probe.sh ready` (can serve its part).
#
# ready, by architecture:
#   standalone   answers PING
#   replication  the master, or a replica whose link to the master is up (a rolling update then waits for
#                each restarted pod to have synced before it takes down the next)
#   cluster      in the cluster (cluster_state:ok) and serving: a master with slots, or a replica whose link
#                is up; a pod that came back empty is not ready until the cluster keeper took it in
#
# `probe.sh sentinel` checks the pod's Sentinel instead (MOBIUS_SENTINEL_PORT; no login: its default user may PING).
# Logs in as MOBIUS_REDIS_CLI_USER (the exporter's user) with REDISCLI_AUTH; MOBIUS_REDIS_PORT is the port.
set -eu
. "$(dirname "$0")/common.sh"

if [ "${1:-}" = sentinel ]; then
    [ "$(MOBIUS_REDIS_CLI_USER=''; cli 127.0.0.1 "${MOBIUS_SENTINEL_PORT:-26379}" PING)" = PONG ] || die "no PONG from Sentinel"
    exit 0
fi
port=${MOBIUS_REDIS_PORT:-6379}
redis() {
    cli 127.0.0.1 "$port" "$@"
}

[ "$(redis PING)" = PONG ] || die "no PONG from Redis"
[ "${1:-live}" = ready ] || exit 0

info_field() {
    redis INFO "$1" | tr -d '\r' | sed -n "s/^$2://p"
}

case "${MOBIUS_REDIS_ARCHITECTURE:-standalone}" in
    standalone) ;;
    replication)
        [ "$(info_field replication role)" = master ] || [ "$(info_field replication master_link_status)" = up ] ||
            die "replica not synced with its master yet"
        ;;
    cluster)
        state=$(redis CLUSTER INFO | tr -d '\r' | sed -n 's/^cluster_state://p')
        [ "$state" = ok ] || die "cluster_state is ${state:-unknown}"
        me=$(redis CLUSTER NODES | grep myself)
        case " $(echo "$me" | cut -d' ' -f3) " in
            *master*) [ "$(echo "$me" | wc -w)" -gt 8 ] || die "a master without slots (not taken in yet)" ;;
            *) [ "$(info_field replication master_link_status)" = up ] || die "replica not synced with its master yet" ;;
        esac
        ;;
esac
