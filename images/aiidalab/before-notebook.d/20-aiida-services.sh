#!/bin/bash
# Start the services AiiDA's full profile needs, as the notebook user, with their data under
# $AIIDA_SERVICES_DIR (default ~/.aiida-services) so it persists in the hub's home volume:
# PostgreSQL (the distribution's, listening on 127.0.0.1:$AIIDA_POSTGRES_PORT) and RabbitMQ
# (127.0.0.1:$AIIDA_BROKER_PORT, consumer timeout disabled as aiida-core requires).
# PostgreSQL is up when the hook returns (the first start creates its cluster, with a random
# superuser password kept beside it, mode 0600). RabbitMQ's Erlang VM needs several seconds to
# boot, so it boots in the background while the profile hook and the server start; whatever
# needs the broker waits for its port (30-aiida-profile.sh does).
# Other ports: $RABBITMQ_DIST_PORT (default broker + 20000) and Erlang's $ERL_EPMD_PORT (4369); a
# hub on the host network gives each server its own (HostNetworkSpawner).
# Only for a Jupyter server (aiida_services_wanted, 10-aiida-user.sh). Idempotent: a service that
# already answers is left alone. Safe to execute or to source.
# Messages go to stderr (stdout is the command's). As root, it runs as NB_USER (10-aiida-user.sh).
if declare -F aiida_services_wanted >/dev/null && ! aiida_services_wanted; then
    echo "20-aiida-services.sh: '${START_COMMAND[*]}' is no Jupyter server: AiiDA's services are not started (AIIDA_SERVICES=always starts them)" >&2
elif [ "$(id -u)" = 0 ] && declare -F aiida_as_user >/dev/null; then
    aiida_as_user "${BASH_SOURCE[0]}" || true
else (
    set -euo pipefail

    services="${AIIDA_SERVICES_DIR:-$HOME/.aiida-services}"
    pg_port="${AIIDA_POSTGRES_PORT:-5432}"
    broker_port="${AIIDA_BROKER_PORT:-5672}"
    pg_bin="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d | sort -V | tail -n 1)"
    pg_data="$services/postgresql/data"
    pg_sockets="/tmp/aiida-postgresql-$(id -u)"  # local, not in a (possibly network) home volume
    rabbit_dir="$services/rabbitmq"

    say() { echo "20-aiida-services.sh: $*" >&2; }

    answers() {  # host port: does something accept TCP connections there?
        (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
    }

    start_postgresql() {
        mkdir -p "$services/postgresql"
        if [ ! -s "$pg_data/PG_VERSION" ]; then
            say "creating the PostgreSQL cluster in $pg_data"
            umask 077
            head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$services/postgresql/superuser-password"
            "$pg_bin/initdb" --pgdata "$pg_data" --username postgres --auth scram-sha-256 \
                --pwfile "$services/postgresql/superuser-password" --encoding UTF8 --locale C.UTF-8 \
                > "$services/postgresql/initdb.log"
        fi
        # PostgreSQL does not answer, so a postmaster.pid or socket lock left by a stopped
        # container is stale (its PID may now belong to another process here): remove them.
        if [ -f "$pg_data/postmaster.pid" ]; then
            pid="$(head -n 1 "$pg_data/postmaster.pid")"
            if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != postgres ]; then
                rm -f "$pg_data/postmaster.pid"
            fi
        fi
        rm -rf "$pg_sockets" && mkdir -m 700 "$pg_sockets"
        "$pg_bin/pg_ctl" --pgdata "$pg_data" --log "$services/postgresql/server.log" --wait --timeout 120 \
            --options "-c listen_addresses=127.0.0.1 -p $pg_port -c unix_socket_directories=$pg_sockets" \
            start > /dev/null
    }

    start_rabbitmq() (  # a subshell: its settings stay with RabbitMQ
        mkdir -p "$rabbit_dir/log"
        export RABBITMQ_NODENAME=rabbit@localhost RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
            RABBITMQ_NODE_PORT="$broker_port" RABBITMQ_DIST_PORT="${RABBITMQ_DIST_PORT:-$((broker_port + 20000))}" \
            ERL_EPMD_ADDRESS=127.0.0.1 \
            RABBITMQ_MNESIA_BASE="$rabbit_dir/mnesia" RABBITMQ_LOG_BASE="$rabbit_dir/log" \
            RABBITMQ_PID_FILE="$rabbit_dir/rabbitmq.pid" \
            RABBITMQ_ENABLED_PLUGINS_FILE="$rabbit_dir/enabled_plugins" \
            RABBITMQ_ADVANCED_CONFIG_FILE=/etc/rabbitmq/aiida-advanced.config
        # Idle Erlang schedulers spin by default: on a shared node (and while this container's
        # server and daemon start) that steals CPU for nothing.
        export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="${RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS:-+sbwt none +sbwtdcpu none +sbwtdio none}"
        # Started directly, not through /usr/sbin/rabbitmq-server, which insists on root or the
        # rabbitmq user.
        setsid /usr/lib/rabbitmq/bin/rabbitmq-server > "$rabbit_dir/log/console.log" 2>&1 < /dev/null &
    )

    if ! mkdir -p "$services" 2>/dev/null; then
        say "cannot create $services (is the home writable for uid $(id -u)?): AiiDA's services are not started"
        exit 0
    fi
    if answers 127.0.0.1 "$broker_port"; then
        say "RabbitMQ already answers on 127.0.0.1:$broker_port"
    else
        start_rabbitmq
        say "RabbitMQ is booting on 127.0.0.1:$broker_port (log: $rabbit_dir/log)"
    fi
    if answers 127.0.0.1 "$pg_port"; then
        say "PostgreSQL already answers on 127.0.0.1:$pg_port"
    elif start_postgresql; then
        say "PostgreSQL is up on 127.0.0.1:$pg_port"
    else
        say "WARNING: PostgreSQL did not start; see $services/postgresql/server.log"
    fi
) fi
