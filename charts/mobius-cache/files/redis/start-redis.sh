#!/bin/sh
# Start one Redis node of the mobius-cache chart (the redis container's command).
#
# Writes, into MOBIUS_REDIS_RUN_DIR: the aclfile (from users.acl and the Secret's passwords) and a node
# config that includes the chart's redis.conf and adds what depends on this pod: the replication login, and
#   replication: replica-announce-ip, and `replicaof` the master the Sentinels name (on a first start, when no
#                Sentinel answers yet, MOBIUS_REDIS_BOOTSTRAP_MASTER, the StatefulSet's pod 0)
#   cluster:     cluster-announce-hostname, so clients and TLS see stable names, not pod IPs
# then execs redis-server with that config and any extra arguments (tests add --port/--bind/--dir).
#
#   MOBIUS_REDIS_ARCHITECTURE     standalone | replication | cluster
#   MOBIUS_REDIS_AUTH             on (default: ACL users from users.acl) | off (no password at all)
#   MOBIUS_REDIS_ANNOUNCE_HOST    this pod's DNS name (<pod>.<headless service>.<namespace>.svc.<domain>)
#   MOBIUS_REDIS_ANNOUNCE_PORT    the port other nodes and clients reach this node on
#   MOBIUS_REDIS_BOOTSTRAP_MASTER "host port" of the first master (replication)
#   MOBIUS_SENTINEL_ADDRESSES, MOBIUS_SENTINEL_MASTER, MOBIUS_REDIS_TLS_CA: see common.sh
set -eu
. "$(dirname "$0")/common.sh"

architecture=${MOBIUS_REDIS_ARCHITECTURE:-standalone}
auth=${MOBIUS_REDIS_AUTH:-on}
mkdir -p "$RUN_DIR"
umask 077
node_conf=$RUN_DIR/redis.conf
echo "include $CONFIG_DIR/redis.conf" >"$node_conf"
if [ "$auth" = on ]; then
    write_aclfile "$CONFIG_DIR/users.acl" "$RUN_DIR/users.acl"
    echo "aclfile $RUN_DIR/users.acl" >>"$node_conf"
fi

if [ "$architecture" != standalone ] && [ "$auth" = on ]; then
    {
        echo "masteruser mobius-replication"
        echo "masterauth $(conf_quote "$(cat "$(password_file mobius-replication)")")"
    } >>"$node_conf"
fi

case "$architecture" in
    standalone) ;;
    replication)
        me="$MOBIUS_REDIS_ANNOUNCE_HOST $MOBIUS_REDIS_ANNOUNCE_PORT"
        master=$(sentinel_master)
        if [ -n "$master" ]; then
            log "the Sentinels name $master as the master"
        else
            master=$MOBIUS_REDIS_BOOTSTRAP_MASTER
            log "no Sentinel answered: first start, the master is $master"
        fi
        {
            echo "replica-announce-ip $MOBIUS_REDIS_ANNOUNCE_HOST"
            echo "replica-announce-port $MOBIUS_REDIS_ANNOUNCE_PORT"
            if [ "$master" != "$me" ]; then
                echo "replicaof $master"
            fi
        } >>"$node_conf"
        ;;
    cluster)
        echo "cluster-announce-hostname $MOBIUS_REDIS_ANNOUNCE_HOST" >>"$node_conf"
        ;;
    *) die "unknown architecture $architecture" ;;
esac

exec redis-server "$node_conf" "$@"
