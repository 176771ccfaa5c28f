# shellcheck shell=bash
#
# Set-up shared by bench/run and bench/suite: packages, the Python venv, the
# release build, a throwaway PostgreSQL cluster, the webhook receiver, and the
# cleanup that stops all of them. Source it from the repository root after
# setting `bench_name` (the folder name under .tmp/), then call the functions in
# order. Everything listens on 127.0.0.1 only.
#
#   bench_prepare           install packages and the venv, set the EXIT trap
#   bench_build             swift build -c release; sets `binary`, and builds
#                           bench/lib/webhook_poster.c; sets `webhook_poster`
#   bench_start_postgres    start PostgreSQL with pg_stat_statements; sets
#                           `postmaster_pid`, `pg_version` and PG_URL
#   bench_start_receiver    start bench/receiver.py; sets `receiver_pid`
#   bench_print_machine CMD print the machine, the versions and the load
#   bench_run_python ARGS   run the venv's Python in the background and wait,
#                           so that a signal stops the run at once
#
# Settings read: BENCH_FSYNC (on or off), BENCH_PG_PORT, BENCH_RECEIVER_PORT,
# BENCH_SERVICE_PORT (the service's HTTP port, exported as
# ACTION_TRIGGERS_LISTEN). Callers set their defaults before sourcing.

# shellcheck source=scripts/lib/postgres.sh
source scripts/lib/postgres.sh

repo_root=$(pwd)
fsync=${BENCH_FSYNC:-on}
work_dir="$repo_root/.tmp/$bench_name"
pg_data="$repo_root/.tmp/$bench_name-postgres"
venv="$repo_root/.tmp/bench-venv"
psycopg_version=3.3.9
pg_started=0
receiver_pid=""
bench_pid=""
export ACTION_TRIGGERS_LISTEN="127.0.0.1:$BENCH_SERVICE_PORT"

if [[ "$fsync" != on && "$fsync" != off ]]; then
    printf 'error: invalid BENCH_FSYNC "%s": use on or off\n' "$fsync" >&2
    exit 2
fi

log() {
    printf '==> %s\n' "$*"
}

bench_cleanup() {
    local status=$?
    if [[ -n "$bench_pid" ]]; then
        kill "$bench_pid" 2>/dev/null || true
        wait "$bench_pid" 2>/dev/null || true
    fi
    # The Python side writes the service PID to this file while a service runs. The
    # file remains only when it died before stopping the service. SIGKILL follows
    # SIGTERM because a service that ignores SIGTERM must not outlive the run.
    if [[ -f "$work_dir/service.pid" ]]; then
        local service_pid
        service_pid=$(cat "$work_dir/service.pid")
        kill "$service_pid" 2>/dev/null || true
        for _ in $(seq 30); do
            kill -0 "$service_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$service_pid" 2>/dev/null || true
        rm -f "$work_dir/service.pid"
    fi
    if [[ -n "$receiver_pid" ]]; then
        kill "$receiver_pid" 2>/dev/null || true
        wait "$receiver_pid" 2>/dev/null || true
    fi
    if ((pg_started == 1)); then
        pg_wipe "$pg_data" || printf 'warning: failed to stop PostgreSQL in %s\n' "$pg_data" >&2
    fi
    exit "$status"
}

bench_prepare() {
    # The EXIT trap also runs after the INT and TERM traps call exit.
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    ensure_packages postgresql postgresql-contrib libpq-dev libcurl4-openssl-dev libmicrohttpd-dev libhiredis-dev \
        librabbitmq-dev librdkafka-dev libssl-dev pkg-config ca-certificates wrk curl
    if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        ensure_packages python3-venv
    fi

    mkdir -p "$work_dir"
    # A PID file left by an earlier run may name a process that is not ours anymore.
    rm -f "$work_dir/service.pid"
    if [[ ! -x "$venv/bin/python" ]]; then
        log "creating the Python venv $venv"
        python3 -m venv "$venv"
    fi
    if ! "$venv/bin/python" -c "import psycopg, sys; sys.exit(psycopg.__version__ != '$psycopg_version')" 2>/dev/null; then
        log "installing psycopg[binary]==$psycopg_version into $venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "psycopg[binary]==$psycopg_version"
    fi
}

bench_build() {
    log "swift build -c release"
    swift build -c release
    binary="$(swift build -c release --show-bin-path)/action-triggers"
    # The Swift toolchain brings clang, and libcurl4-openssl-dev is installed above.
    webhook_poster="$work_dir/webhook-poster"
    clang -O2 -o "$webhook_poster" bench/lib/webhook_poster.c -lcurl
}

bench_start_postgres() {
    local pg_fast=0
    if [[ "$fsync" == off ]]; then
        pg_fast=1
    fi
    pg_wipe "$pg_data"
    pg_started=1
    PG_FAST=$pg_fast pg_start "$pg_data" "$BENCH_PG_PORT"
    # pg_stat_statements, with planning time, and WAL timing feed the breakdown
    # tables. The library loads only at server start, hence the restart, and its
    # track_planning setting exists only once it is loaded. Everything else keeps
    # PostgreSQL's defaults, including synchronous_commit = on.
    psql "$PG_URL" --quiet --no-psqlrc --set ON_ERROR_STOP=1 <<'SQL'
ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements';
ALTER SYSTEM SET track_wal_io_timing = on;
SQL
    pg_stop "$pg_data"
    PG_FAST=$pg_fast pg_start "$pg_data" "$BENCH_PG_PORT"
    psql "$PG_URL" --quiet --no-psqlrc --set ON_ERROR_STOP=1 <<'SQL'
ALTER SYSTEM SET pg_stat_statements.track_planning = on;
SELECT pg_reload_conf();
SQL
    postmaster_pid=$(head -n 1 "$pg_data/postmaster.pid")
    pg_version=$(psql "$PG_URL" --no-psqlrc --tuples-only --no-align --command 'SHOW server_version')
}

bench_start_receiver() {
    log "starting the receiver on 127.0.0.1:$BENCH_RECEIVER_PORT"
    "$venv/bin/python" bench/receiver.py --port "$BENCH_RECEIVER_PORT" &
    receiver_pid=$!
    local _
    for _ in $(seq 100); do
        if curl -sf "http://127.0.0.1:$BENCH_RECEIVER_PORT/_bench/count" >/dev/null; then
            return 0
        fi
        if ! kill -0 "$receiver_pid" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    printf 'error: the receiver did not respond on 127.0.0.1:%s within 10 s (is the port taken? set BENCH_RECEIVER_PORT)\n' \
        "$BENCH_RECEIVER_PORT" >&2
    exit 1
}

bench_print_machine() {
    log "machine and versions"
    printf 'date:        %s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
    printf 'command:     %s\n' "$1"
    printf 'commit:      %s\n' "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    printf 'cpu:         %s, %s cores\n' "$(grep -m 1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" "$(nproc)"
    printf 'hypervisor:  %s\n' "$(lscpu | awk -F: '/Hypervisor vendor/ {gsub(/^ +/, "", $2); print $2}' | grep . || echo none)"
    printf 'memory:      %s total\n' "$(free -h | awk '/^Mem:/ {print $2}')"
    printf 'kernel:      %s\n' "$(uname -r)"
    printf 'swift:       %s\n' "$(swift --version 2>&1 | head -n 1)"
    printf 'postgresql:  %s (fsync=%s, synchronous_commit=on)\n' "$pg_version" "$fsync"
    printf 'libcurl:     %s\n' "$(curl-config --version 2>/dev/null || dpkg-query --show --showformat='${Version}' libcurl4-openssl-dev)"
    printf 'python:      %s, psycopg %s\n' "$("$venv/bin/python" --version)" "$("$venv/bin/python" -c 'import psycopg; print(psycopg.__version__)')"
    printf 'load:        %s (1, 5 and 15 minute load averages before the run)\n' "$(cut -d ' ' -f 1-3 /proc/loadavg)"
}

# In the background with `wait`, because bash runs a trap only after the foreground
# command ends, and a signal should stop the run at once.
bench_run_python() {
    "$venv/bin/python" "$@" &
    bench_pid=$!
    local status=0
    wait "$bench_pid" || status=$?
    bench_pid=""
    return "$status"
}
