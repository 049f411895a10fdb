#!/bin/sh
# Start the Sentinel of one Redis pod (replication architecture; the sentinel container's command).
#
# Sentinel rewrites its own config, so a fresh one is written into MOBIUS_REDIS_RUN_DIR at every start from
# the chart's sentinel.conf: the master to monitor is the one the other Sentinels name (or, when none answers,
# MOBIUS_REDIS_BOOTSTRAP_MASTER), the password lines come from the Secret, and the aclfile from sentinel.acl.
#
#   MOBIUS_REDIS_ANNOUNCE_HOST   this pod's DNS name;  MOBIUS_SENTINEL_ANNOUNCE_PORT  the Sentinel's port
#   MOBIUS_REDIS_BOOTSTRAP_MASTER, MOBIUS_SENTINEL_ADDRESSES, MOBIUS_SENTINEL_MASTER: see start-redis.sh
set -eu
. "$(dirname "$0")/common.sh"

mkdir -p "$RUN_DIR"
umask 077

master=$(sentinel_master)
if [ -n "$master" ]; then
    log "the Sentinels name $master as the master"
else
    master=$MOBIUS_REDIS_BOOTSTRAP_MASTER
    log "no Sentinel answered: first start, monitoring $master"
fi
host=${master% *}
port=${master#* }
name=$MOBIUS_SENTINEL_MASTER

conf=$RUN_DIR/sentinel.conf
sed -e "s/@MASTER_HOST@/$host/" -e "s/@MASTER_PORT@/$port/" \
    -e "s/@ANNOUNCE_HOST@/$MOBIUS_REDIS_ANNOUNCE_HOST/" -e "s/@ANNOUNCE_PORT@/$MOBIUS_SENTINEL_ANNOUNCE_PORT/" \
    "$CONFIG_DIR/sentinel.conf" >"$conf"
if [ "${MOBIUS_REDIS_AUTH:-on}" = on ]; then
    write_aclfile "$CONFIG_DIR/sentinel.acl" "$RUN_DIR/sentinel-users.acl"
    sentinel_password=$(cat "$(password_file mobius-sentinel)")
    {
        echo "aclfile $RUN_DIR/sentinel-users.acl"
        echo "sentinel auth-user $name mobius-sentinel"
        echo "sentinel auth-pass $name $(conf_quote "$sentinel_password")"
        echo "sentinel sentinel-user mobius-sentinel"
        echo "sentinel sentinel-pass $(conf_quote "$sentinel_password")"
    } >>"$conf"
fi

exec redis-server "$conf" --sentinel "$@"
