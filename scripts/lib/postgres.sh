# shellcheck shell=bash
#
# Helpers for scripts that need Debian packages and a throwaway PostgreSQL
# cluster on 127.0.0.1. Source this file. It defines functions and sets no
# shell options, so it works with and without `set -euo pipefail`.
#
#   ensure_packages PKG...   install missing Debian packages with apt-get
#   pg_start DATADIR PORT    start (and on first use initdb) a cluster in DATADIR
#                            and export PG_URL. PG_FAST=1 turns fsync off. Sets
#                            PG_STARTED to 1, or to 0 when it reused a running server
#   pg_stop DATADIR          stop that cluster, succeeding if it is not running
#   pg_restart DATADIR       restart that cluster with a fast shutdown
#   pg_wipe DATADIR          stop that cluster and delete its files
#   pg_url PORT              print the connection URL for PORT
#
# The cluster never depends on a system service: Debian's policy-rc.d keeps
# the packaged cluster from starting, so these functions run pg_ctl directly.

# Whether `apt-get update` already ran in this shell process (0 or 1).
_pg_apt_updated=0

_pg_log() {
    printf '==> %s\n' "$*"
}

_pg_error() {
    printf 'error: %s\n' "$*" >&2
}

# Install each named Debian package that dpkg does not list as installed.
# Runs `apt-get update` once per process before the first install, because a
# fresh machine has stale or empty package lists.
ensure_packages() {
    local missing=()
    local package status
    for package in "$@"; do
        status=$(dpkg-query --show --showformat='${db:Status-Status}' "$package" 2>/dev/null || true)
        if [[ "$status" != installed ]]; then
            missing+=("$package")
        fi
    done
    if ((${#missing[@]} == 0)); then
        return 0
    fi

    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if ! command -v sudo >/dev/null 2>&1; then
            _pg_error "missing Debian packages: ${missing[*]}. Install them as root with: apt-get install ${missing[*]}"
            return 1
        fi
        sudo=(sudo)
    fi

    _pg_log "installing Debian packages: ${missing[*]}"
    if ((_pg_apt_updated == 0)); then
        if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq; then
            _pg_error "apt-get update failed"
            return 1
        fi
        _pg_apt_updated=1
    fi
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
        _pg_error "apt-get install failed for: ${missing[*]}"
        return 1
    fi
}

pg_url() {
    printf 'postgresql://postgres@127.0.0.1:%s/postgres\n' "$1"
}

# Print the newest installed PostgreSQL bin directory, such as
# /usr/lib/postgresql/15/bin on Debian 12.
_pg_bindir() {
    local bindirs=(/usr/lib/postgresql/*/bin)
    local bindir
    bindir=$(printf '%s\n' "${bindirs[@]}" | sort -V | tail -n 1)
    if [[ -z "$bindir" || ! -x "$bindir/pg_ctl" ]]; then
        _pg_error "PostgreSQL server binaries not found under /usr/lib/postgresql. Install them with: apt-get install postgresql"
        return 1
    fi
    printf '%s\n' "$bindir"
}

# Run a command as the cluster's owner. PostgreSQL refuses to run as root, so
# root runs it as the `postgres` user that Debian's postgresql package creates.
# The command starts in / because the caller's directory may be unreadable
# for that user.
_pg_run_as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && "$@")
    fi
}

# Create PATH's parent directory and print PATH as an absolute path. PATH
# itself need not exist.
_pg_absolute_path() {
    local path=$1
    local parent
    parent=$(dirname -- "$path")
    mkdir -p -- "$parent" || return 1
    printf '%s/%s\n' "$(cd -- "$parent" && pwd -P)" "$(basename -- "$path")"
}

# Create DATADIR if needed and print the directory that contains the cluster.
#
# That is DATADIR itself, except when running as root and the `postgres` user
# cannot reach DATADIR, as under /root (mode 0700). Then the cluster lives in
# a new directory under /tmp and DATADIR is a symlink to it. PostgreSQL gets
# the symlink's target, because it changes into its data directory as the
# `postgres` user.
_pg_prepare_cluster_dir() {
    local datadir=$1
    local target

    if [[ -L "$datadir" ]]; then
        target=$(readlink -f -- "$datadir")
        if [[ -n "$target" && -d "$target" ]]; then
            printf '%s\n' "$target"
            return 0
        fi
        # The target is gone, for example after /tmp was cleared.
        rm -f -- "$datadir" || return 1
    fi

    if [[ -d "$datadir" ]]; then
        if [[ $(id -u) -eq 0 ]] && ! runuser -u postgres -- test -x "$datadir"; then
            _pg_error "user postgres cannot access $datadir. Delete it, or give its parent directories search permission (chmod o+x)."
            return 1
        fi
        printf '%s\n' "$datadir"
        return 0
    fi

    if [[ $(id -u) -ne 0 ]]; then
        mkdir -m 0700 -- "$datadir" || return 1
        printf '%s\n' "$datadir"
        return 0
    fi

    if runuser -u postgres -- test -x "$(dirname -- "$datadir")"; then
        mkdir -m 0700 -- "$datadir" || return 1
        target=$datadir
    else
        target=$(mktemp -d /tmp/action-triggers-postgres.XXXXXX) || return 1
        ln -s -- "$target" "$datadir" || return 1
        # Log to stderr, because the caller captures stdout.
        _pg_log "user postgres cannot reach $(dirname -- "$datadir"), so the cluster is kept in $target" >&2
    fi
    chown postgres:postgres -- "$target" || return 1
    printf '%s\n' "$target"
}

# Quote VALUE as a postgresql.conf string literal.
_pg_conf_string() {
    printf "'%s'" "${1//\'/\'\'}"
}

# Start a PostgreSQL cluster in DATADIR that listens on 127.0.0.1:PORT only.
# Runs initdb first unless DATADIR already contains a cluster. Reuses a server
# that already runs from DATADIR if it accepts connections on PORT.
# With PG_FAST=1 the server runs with fsync=off, which is only safe for
# throwaway data such as a test database.
pg_start() {
    if (($# != 2)); then
        _pg_error "usage: pg_start DATADIR PORT"
        return 1
    fi
    local port=$2
    if [[ ! "$port" =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
        _pg_error "invalid PostgreSQL port '$port': expected an integer from 1 to 65535"
        return 1
    fi

    local bindir datadir cluster_dir
    bindir=$(_pg_bindir) || return 1
    datadir=$(_pg_absolute_path "$1") || return 1
    cluster_dir=$(_pg_prepare_cluster_dir "$datadir") || return 1

    if [[ $(id -u) -eq 0 && $(stat -c %U -- "$cluster_dir") != postgres ]]; then
        chown -R postgres:postgres -- "$cluster_dir" || return 1
    fi

    if [[ ! -f "$cluster_dir/PG_VERSION" ]]; then
        local locale=C
        if locale -a 2>/dev/null | grep -qix 'c\.utf-\?8'; then
            locale=C.UTF-8
        fi
        _pg_log "initializing PostgreSQL cluster in $datadir"
        local initdb_output
        if ! initdb_output=$(_pg_run_as_owner "$bindir/initdb" --pgdata="$cluster_dir" --auth=trust \
            --username=postgres --encoding=UTF8 --locale="$locale" 2>&1); then
            printf '%s\n' "$initdb_output" >&2
            _pg_error "initdb failed for $datadir"
            return 1
        fi
        # The settings file is rewritten on every start, so a later call can
        # change the port or PG_FAST.
        printf "\ninclude_if_exists = 'action_triggers.conf'\n" >>"$cluster_dir/postgresql.conf"
    fi

    # A server left running, for example by a killed script, keeps its settings.
    if _pg_run_as_owner "$bindir/pg_ctl" status --pgdata="$cluster_dir" >/dev/null 2>&1; then
        if "$bindir/pg_isready" --quiet --host=127.0.0.1 --port="$port" --timeout=5; then
            _pg_log "reusing PostgreSQL already running from $datadir on 127.0.0.1:$port"
            PG_URL=$(pg_url "$port")
            export PG_URL
            PG_STARTED=0
            return 0
        fi
        _pg_error "a PostgreSQL server already runs from $datadir but does not accept connections on 127.0.0.1:$port. Stop it with: $bindir/pg_ctl stop --pgdata=$cluster_dir"
        return 1
    fi

    # Clients connect over TCP, so the Unix socket only has to stay clear of
    # a system cluster's socket. Linux limits socket paths to 107 bytes, and
    # a deeper DATADIR gets no socket at all.
    local socket_dir=$cluster_dir
    if ((${#cluster_dir} + ${#port} + 10 > 107)); then
        socket_dir=""
    fi

    local fsync=on
    if [[ "${PG_FAST:-0}" == 1 ]]; then
        fsync=off
    fi
    {
        printf '# Written by scripts/lib/postgres.sh on every start.\n'
        printf "listen_addresses = '127.0.0.1'\n"
        printf 'port = %s\n' "$port"
        printf 'unix_socket_directories = %s\n' "$(_pg_conf_string "$socket_dir")"
        printf 'max_connections = 200\n'
        # Above zero so that tests can run PREPARE TRANSACTION, which PostgreSQL
        # rejects while max_prepared_transactions is 0 (its default).
        printf 'max_prepared_transactions = 10\n'
        printf 'fsync = %s\n' "$fsync"
    } >"$cluster_dir/action_triggers.conf" || return 1

    local log_file="$cluster_dir/log/postgresql.log"
    if [[ ! -d "$cluster_dir/log" ]]; then
        mkdir -m 0700 -- "$cluster_dir/log" || return 1
    fi
    if [[ $(id -u) -eq 0 ]]; then
        chown postgres:postgres -- "$cluster_dir/action_triggers.conf" "$cluster_dir/log" || return 1
    fi

    _pg_log "starting PostgreSQL on 127.0.0.1:$port"
    # pg_ctl waits up to 30 s until the server reports itself ready in
    # postmaster.pid. pg_isready then checks 127.0.0.1:PORT, which clients use.
    if ! _pg_run_as_owner "$bindir/pg_ctl" start --pgdata="$cluster_dir" --log="$log_file" \
        --wait --timeout=30 >/dev/null; then
        _pg_error "PostgreSQL failed to start on 127.0.0.1:$port. Last lines of $log_file:"
        tail -n 30 -- "$log_file" >&2
        return 1
    fi

    local deadline=$((SECONDS + 30))
    until "$bindir/pg_isready" --quiet --host=127.0.0.1 --port="$port" --timeout=2; do
        if ((SECONDS >= deadline)); then
            _pg_error "timed out after 30 s waiting for PostgreSQL on 127.0.0.1:$port. Last lines of $log_file:"
            tail -n 30 -- "$log_file" >&2
            return 1
        fi
        sleep 0.2
    done

    PG_URL=$(pg_url "$port")
    export PG_URL
    PG_STARTED=1
}

# Stop the cluster in DATADIR with a fast shutdown, which ends open sessions.
# Succeeds when DATADIR contains no cluster or its server is not running.
pg_stop() {
    if (($# != 1)); then
        _pg_error "usage: pg_stop DATADIR"
        return 1
    fi
    local datadir=$1
    if [[ ! -e "$datadir" ]]; then
        return 0
    fi
    local bindir cluster_dir
    bindir=$(_pg_bindir) || return 1
    cluster_dir=$(readlink -f -- "$datadir")
    if [[ ! -f "$cluster_dir/PG_VERSION" ]]; then
        return 0
    fi
    # pg_ctl status exits 3 when no server runs from that data directory.
    if ! _pg_run_as_owner "$bindir/pg_ctl" status --pgdata="$cluster_dir" >/dev/null 2>&1; then
        return 0
    fi
    _pg_log "stopping PostgreSQL in $datadir"
    _pg_run_as_owner "$bindir/pg_ctl" stop --pgdata="$cluster_dir" --mode=fast --wait >/dev/null
}

# Restart the running cluster in DATADIR with a fast shutdown, which ends open
# sessions, as `pg_ctl restart -m fast` does. Waits until it accepts connections.
pg_restart() {
    if (($# != 1)); then
        _pg_error "usage: pg_restart DATADIR"
        return 1
    fi
    local bindir cluster_dir
    bindir=$(_pg_bindir) || return 1
    cluster_dir=$(readlink -f -- "$1")
    if [[ ! -f "$cluster_dir/PG_VERSION" ]]; then
        _pg_error "no PostgreSQL cluster in $1"
        return 1
    fi
    _pg_log "restarting PostgreSQL in $1"
    if ! _pg_run_as_owner "$bindir/pg_ctl" restart --pgdata="$cluster_dir" --log="$cluster_dir/log/postgresql.log" \
        --mode=fast --wait --timeout=60 >/dev/null; then
        _pg_error "PostgreSQL failed to restart. Last lines of $cluster_dir/log/postgresql.log:"
        tail -n 30 -- "$cluster_dir/log/postgresql.log" >&2
        return 1
    fi
}

# Stop the cluster in DATADIR, then delete DATADIR and, when DATADIR is a
# symlink made by pg_start, the directory it points to.
pg_wipe() {
    if (($# != 1)); then
        _pg_error "usage: pg_wipe DATADIR"
        return 1
    fi
    local datadir=$1
    pg_stop "$datadir" || return 1
    if [[ -L "$datadir" ]]; then
        local target
        target=$(readlink -f -- "$datadir")
        if [[ "$target" == /tmp/action-triggers-postgres.* ]]; then
            rm -rf -- "$target" || return 1
        fi
        rm -f -- "$datadir"
    else
        rm -rf -- "$datadir"
    fi
}
