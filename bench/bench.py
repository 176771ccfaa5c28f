"""Run the burst, backlog and steady-rate scenarios against action-triggers, as started by bench/run.

Every run gets a fresh database and a fresh service process:
  1. CREATE DATABASE, `action-triggers migrate`, the table myapp_customer and one config
     (post_save on myapp.Customer, one POST webhook to the receiver).
  2. `action-triggers serve`, then a wait until its listener, dispatcher and delivery
     connections show up in pg_stat_activity.
  3. A warm-up of WARMUP_ROWS inserts, all delivered before the measurement starts, so
     libcurl has open keep-alive connections. Then the receiver's records are reset.
  4. The measurement, a wait until every row has arrived, GRACE_SECONDS more for late
     duplicates, then the receiver's records and the service's delivery table.
  5. SIGTERM to the service (SIGKILL after STOP_TIMEOUT_SECONDS), DROP DATABASE.
The backlog scenario inserts its rows between steps 1 and 2 and skips the warm-up.

Inserts run on one connection in autocommit mode, so each INSERT is its own transaction.
The commit time of a row is time.time() right after its INSERT returns. The receiver
stamps each webhook with time.time() too, so latencies compare two CLOCK_REALTIME
readings on one machine.
"""

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql

WARMUP_ROWS = 100
GRACE_SECONDS = 1.0
STOP_TIMEOUT_SECONDS = 3
DELIVERY_TIMEOUT_SECONDS = 120
SERVICE_APPLICATIONS = ("action-triggers/listener", "action-triggers/dispatcher", "action-triggers/delivery")
LOADGEN_APPLICATION = "bench-loadgen"
INSERT_SQL = "INSERT INTO myapp_customer (name, email) VALUES (%s, %s) RETURNING id"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Short names for the statements that pg_stat_statements reports, matched by a fragment
# of their text. Statements that match none are shown by the start of their text.
STATEMENT_NAMES = [
    ("INSERT INTO myapp_customer", "load generator: INSERT (capture trigger included)"),
    ("WITH batch AS", "dispatcher: event -> delivery"),
    ("WITH due AS", "delivery worker: claim"),
    ("jsonb_to_recordset", "delivery worker: record attempts"),
    ("min(next_attempt_at)", "delivery worker: next due time"),
    ("sync_triggers", "dispatcher: sync capture triggers"),
]


class BenchError(Exception):
    """A run that could not be completed or whose deliveries are incomplete."""


# ---------------------------------------------------------------------------
# Receiver and processes


class ReceiverClient:
    """Control requests to bench/receiver.py over one keep-alive connection."""

    def __init__(self, port):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def request(self, method, path):
        self.connection.request(method, path)
        response = self.connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise BenchError(f"receiver returned HTTP {response.status} for {method} {path}")
        return json.loads(body)

    def count(self):
        return self.request("GET", "/_bench/count")

    def records(self):
        return self.request("GET", "/_bench/records")["records"]

    def reset(self):
        self.request("POST", "/_bench/reset")


def process_stat_fields(pid):
    """Returns the fields of /proc/<pid>/stat after the command name, from the state
    on, or None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name is in parentheses and may contain spaces.
    return text[text.rindex(")") + 2:].split()


def cpu_seconds(pid):
    """Returns user plus system CPU seconds of a process, or None when it is gone."""
    fields = process_stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def busy_cpu_seconds():
    """Returns CPU seconds that all cores of the machine spent outside idle and iowait."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(field) for field in fields[:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS


def postgres_processes(postmaster_pid):
    """Returns the PIDs of the postmaster and all its child processes."""
    pids = [postmaster_pid]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = process_stat_fields(entry.name)
        if fields is None:
            continue
        if int(fields[1]) == postmaster_pid:
            pids.append(int(entry.name))
    return pids


class CPUSampler:
    """CPU time of each component between start() and stop(), as percent of one core."""

    def __init__(self, admin, postmaster_pid, receiver_pid, service_pid, database):
        self.admin = admin
        self.postmaster_pid = postmaster_pid
        self.receiver_pid = receiver_pid
        self.service_pid = service_pid
        self.database = database

    def pid_groups(self):
        """Maps each component name to the PIDs whose CPU time it counts."""
        rows = self.admin.execute(
            "SELECT pid, application_name FROM pg_stat_activity WHERE datname = %s", (self.database,)
        ).fetchall()
        loadgen_backends = {pid for pid, name in rows if name == LOADGEN_APPLICATION}
        service_backends = {pid for pid, name in rows if name.startswith("action-triggers/")}
        other_postgres = set(postgres_processes(self.postmaster_pid)) - loadgen_backends - service_backends
        return {
            "action-triggers": {self.service_pid},
            "postgres: backends of action-triggers": service_backends,
            "postgres: backend of the load generator": loadgen_backends,
            "postgres: other processes": other_postgres,
            "receiver": {self.receiver_pid},
        }

    def snapshot(self):
        seconds = {name: {pid: cpu_seconds(pid) for pid in pids} for name, pids in self.groups.items()}
        seconds["load generator (Python)"] = {os.getpid(): time.process_time()}
        return seconds

    def start(self):
        self.groups = self.pid_groups()
        self.started = time.monotonic()
        self.before = self.snapshot()
        self.machine_before = busy_cpu_seconds()

    def stop(self):
        after = self.snapshot()
        machine_used = busy_cpu_seconds() - self.machine_before
        wall = time.monotonic() - self.started
        usage = {}
        for name, pids in after.items():
            used = 0.0
            for pid, seconds in pids.items():
                earlier = self.before[name].get(pid)
                if seconds is not None and earlier is not None:
                    used += seconds - earlier
            usage[name] = round(100 * used / wall, 1)
        # Everything else, such as other users' builds on a shared machine.
        usage["other processes on the machine"] = round(max(0.0, 100 * machine_used / wall - sum(usage.values())), 1)
        return usage


# ---------------------------------------------------------------------------
# One run


class Run:
    """A fresh database and, unless start_service is False, a running and warmed-up service."""

    def __init__(self, options, admin, database, start_service=True):
        self.options = options
        self.admin = admin
        self.database = database
        self.start_service_now = start_service
        self.url = f"postgresql://postgres@127.0.0.1:{options.pg_port}/{database}"
        self.service = None
        self.service_started_at = None
        self.ignored_sigterm = False
        self.log_path = Path(options.work_dir) / f"{database}.service.log"
        self.pid_path = Path(options.work_dir) / "service.pid"
        self.receiver = ReceiverClient(options.receiver_port)
        self.connection = None

    def __enter__(self):
        try:
            self.set_up()
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, *exc_info):
        self.stop_service()
        if self.connection is not None:
            self.connection.close()
        self.admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.database)))
        return False

    def set_up(self):
        self.admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.database)))
        self.admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        migrate = subprocess.run(
            [self.options.binary, "migrate"], env=self.service_environment(), capture_output=True, text=True, timeout=60
        )
        if migrate.returncode != 0:
            raise BenchError(f"action-triggers migrate failed with status {migrate.returncode}: {migrate.stderr.strip()}")

        self.connection = psycopg.connect(self.url, autocommit=True, application_name=LOADGEN_APPLICATION)
        self.connection.execute(
            "CREATE TABLE myapp_customer (id bigserial PRIMARY KEY, name text NOT NULL, email varchar(254) NOT NULL)"
        )
        config = {
            "config_signals": [{"signal": "post_save"}],
            "content_types": [{"app_label": "myapp", "model_name": "Customer"}],
            "webhooks": [{"url": f"http://127.0.0.1:{self.options.receiver_port}/hook", "http_method": "POST"}],
            "active": True,
        }
        self.connection.execute("SELECT action_triggers.create_config(%s::jsonb)", (json.dumps(config),))
        self.receiver.reset()
        if self.start_service_now:
            self.start_service()
            self.warm_up()

    def service_environment(self):
        environment = dict(os.environ)
        environment.update({
            "DATABASE_URL": self.url,
            "ACTION_TRIGGERS_SETTINGS": str(Path(self.options.work_dir) / "settings.json"),
            "ACTION_TRIGGERS_LOG_LEVEL": "warning",
        })
        return environment

    def start_service(self):
        with open(self.log_path, "w") as log:
            self.service_started_at = time.time()
            self.service = subprocess.Popen(
                [self.options.binary, "serve"], env=self.service_environment(), stdout=log, stderr=log
            )
        # bench/run kills this PID on exit if bench.py dies before stopping the service.
        self.pid_path.write_text(f"{self.service.pid}\n")
        self.wait_for_service()

    def check_service_alive(self):
        if self.service is not None and self.service.poll() is not None:
            raise BenchError(
                f"action-triggers exited with status {self.service.returncode}; last lines of {self.log_path}:\n"
                + self.log_path.read_text()[-2000:]
            )

    def wait_for_service(self, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            self.check_service_alive()
            connected = self.admin.execute(
                "SELECT count(DISTINCT application_name) FROM pg_stat_activity "
                "WHERE datname = %s AND application_name = ANY(%s)",
                (self.database, list(SERVICE_APPLICATIONS)),
            ).fetchone()[0]
            if connected == len(SERVICE_APPLICATIONS):
                return
            if time.monotonic() > deadline:
                raise BenchError(f"action-triggers did not open its {len(SERVICE_APPLICATIONS)} connections within {timeout} s")
            time.sleep(0.01)

    def stop_service(self):
        if self.service is None or self.service.poll() is not None:
            return
        self.service.send_signal(signal.SIGTERM)
        try:
            self.service.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.ignored_sigterm = True
            self.service.kill()
            self.service.wait()
        self.pid_path.unlink(missing_ok=True)

    def insert(self, cursor, number):
        """Inserts one row in its own transaction and returns (id, commit time)."""
        cursor.execute(INSERT_SQL, (f"bench customer {number:06d}", f"customer{number:06d}@example.com"))
        row_id = cursor.fetchone()[0]
        return row_id, time.time()

    def warm_up(self):
        with self.connection.cursor() as cursor:
            for number in range(WARMUP_ROWS):
                self.insert(cursor, number)
        seen = self.wait_for_deliveries(WARMUP_ROWS, timeout=30)
        if seen < WARMUP_ROWS:
            raise BenchError(f"warm-up: only {seen} of {WARMUP_ROWS} rows were delivered within 30 s")
        self.receiver.reset()

    def wait_for_deliveries(self, expected, timeout):
        """Waits until the receiver has seen `expected` distinct row ids and returns the count seen."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.receiver.count()["distinct_ids"]
            if seen >= expected or time.monotonic() > deadline:
                return seen
            self.check_service_alive()
            time.sleep(0.02)

    def cpu_sampler(self):
        return CPUSampler(self.admin, self.options.postmaster_pid, self.options.receiver_pid, self.service.pid, self.database)

    def reset_statistics(self):
        """Resets the pg_stat_statements and pg_stat_wal counters of the cluster."""
        self.admin.execute("SELECT pg_stat_statements_reset()")
        self.admin.execute("SELECT pg_stat_reset_shared('wal')")

    def wal_stats(self):
        """Returns WAL write and flush counts and the flush time of the whole cluster since the reset.

        PostgreSQL 15 backends publish these counters at most once a second
        (PGSTAT_MIN_INTERVAL in pgstat.c), so call this only after GRACE_SECONDS of
        quiet. With fsync off, PostgreSQL skips the flushes and wal_sync stays 0.
        """
        syncs, sync_ms, writes = self.admin.execute(
            "SELECT wal_sync, wal_sync_time, wal_write FROM pg_stat_wal"
        ).fetchone()
        return {"wal_syncs": syncs, "wal_sync_ms": sync_ms, "wal_writes": writes}

    def statement_stats(self):
        """Returns {statement name: [calls, total planning ms, total execution ms]} for this database since the reset."""
        rows = self.admin.execute(
            "SELECT s.query, s.calls, s.total_plan_time, s.total_exec_time FROM pg_stat_statements s "
            "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s",
            (self.database,),
        ).fetchall()
        stats = {}
        for query, calls, plan_ms, exec_ms in rows:
            name = next((label for fragment, label in STATEMENT_NAMES if fragment in query), " ".join(query.split())[:50])
            entry = stats.setdefault(name, [0, 0.0, 0.0])
            entry[0] += calls
            entry[1] += plan_ms
            entry[2] += exec_ms
        return stats

    def collect(self, commits, scenario):
        """Matches receipts to commits once all rows have arrived, or raises BenchError if rows are missing.

        Returns the first receipt time per row id and a dict of delivery counts.
        """
        seen = self.wait_for_deliveries(len(commits), timeout=DELIVERY_TIMEOUT_SECONDS)
        if seen < len(commits):
            raise BenchError(f"{scenario}: only {seen} of {len(commits)} rows were delivered within {DELIVERY_TIMEOUT_SECONDS} s")
        time.sleep(GRACE_SECONDS)

        first_receipt = {}
        duplicates = 0
        unknown = 0
        for receipt_time, row_id in self.receiver.records():
            if row_id not in commits:
                unknown += 1
            elif row_id in first_receipt:
                duplicates += 1
            else:
                first_receipt[row_id] = receipt_time
        missing = sorted(set(commits) - set(first_receipt))
        if missing:
            raise BenchError(f"{scenario}: {len(missing)} rows were not delivered (first missing ids: {missing[:10]})")

        deliveries, succeeded, retried = self.connection.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE attempts > 1) "
            "FROM action_triggers.delivery d JOIN action_triggers.event e ON e.id = d.event_id "
            "WHERE (e.new_row ->> 'id')::bigint = ANY(%s)",
            (list(commits),),
        ).fetchone()
        counts = {
            "duplicates": duplicates,
            "unknown_requests": unknown,
            "deliveries": deliveries,
            "not_succeeded": deliveries - succeeded,
            "retried": retried,
        }
        return first_receipt, counts


# ---------------------------------------------------------------------------
# Scenarios


def percentile(sorted_values, percent):
    """Returns the nearest-rank percentile of an ascending list."""
    rank = max(1, -(-len(sorted_values) * percent // 100))
    return sorted_values[int(rank) - 1]


def run_burst(run, rows):
    """Inserts `rows` rows as fast as one client can while the service runs."""
    commits = {}
    sampler = run.cpu_sampler()
    run.reset_statistics()
    sampler.start()
    with run.connection.cursor() as cursor:
        insert_started = time.time()
        for number in range(rows):
            row_id, commit_time = run.insert(cursor, WARMUP_ROWS + number)
            commits[row_id] = commit_time
    run.wait_for_deliveries(rows, timeout=DELIVERY_TIMEOUT_SECONDS)
    cpu = sampler.stop()
    statements = run.statement_stats()
    first_receipt, counts = run.collect(commits, "burst")
    wal = run.wal_stats()

    first_commit = min(commits.values())
    last_commit = max(commits.values())
    last_receipt = max(first_receipt.values())
    latencies = sorted((first_receipt[row_id] - commits[row_id]) * 1000 for row_id in commits)
    return {
        "rows": rows,
        "insert_per_sec": rows / (last_commit - insert_started),
        "events_per_sec": rows / (last_receipt - first_commit),
        "first_commit_to_last_receipt_s": last_receipt - first_commit,
        "last_receipt_after_last_commit_s": last_receipt - last_commit,
        "delivered_by_last_commit": sum(1 for receipt in first_receipt.values() if receipt <= last_commit),
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p99_ms": percentile(latencies, 99),
        "latency_max_ms": latencies[-1],
        **counts,
        **wal,
        "cpu_percent": cpu,
        "statements": statements,
    }


def run_backlog(run, rows):
    """Inserts `rows` rows with the service stopped, then starts it and times the drain.

    The inserts run like the burst's, one client and one transaction each, so their
    rate shows what the running service costs the application's inserts. CPU sampling
    starts once the service has connected, a few milliseconds after it was started.
    """
    commits = {}
    with run.connection.cursor() as cursor:
        insert_started = time.time()
        for number in range(rows):
            row_id, commit_time = run.insert(cursor, number)
            commits[row_id] = commit_time
    insert_per_sec = rows / (max(commits.values()) - insert_started)
    run.reset_statistics()
    run.start_service()
    sampler = run.cpu_sampler()
    sampler.start()
    run.wait_for_deliveries(rows, timeout=DELIVERY_TIMEOUT_SECONDS)
    cpu = sampler.stop()
    statements = run.statement_stats()
    first_receipt, counts = run.collect(commits, "backlog")
    wal = run.wal_stats()

    first_receipt_time = min(first_receipt.values())
    last_receipt = max(first_receipt.values())
    return {
        "rows": rows,
        "insert_per_sec_without_service": insert_per_sec,
        "drain_events_per_sec": rows / (last_receipt - first_receipt_time),
        "start_to_last_receipt_s": last_receipt - run.service_started_at,
        "start_to_first_receipt_s": first_receipt_time - run.service_started_at,
        **counts,
        **wal,
        "cpu_percent": cpu,
        "statements": statements,
    }


def stage_latencies(run, commits, first_receipt):
    """Splits commit-to-receipt latency at the service's own timestamps and returns p50 and p99 per stage in ms.

    event.dispatched_at is now() of the dispatcher's transaction, so it is when that
    transaction started, and can precede the client's commit time by a little.
    delivery_attempt.started_at is when the delivery worker started the row's
    request, after its claim returned.
    """
    rows = run.connection.execute(
        "SELECT (e.new_row ->> 'id')::bigint, extract(epoch FROM e.dispatched_at)::float8, "
        "extract(epoch FROM a.started_at)::float8 "
        "FROM action_triggers.event e "
        "JOIN action_triggers.delivery d ON d.event_id = e.id "
        "JOIN action_triggers.delivery_attempt a ON a.delivery_id = d.id AND a.attempt = 1 "
        "WHERE (e.new_row ->> 'id')::bigint = ANY(%s)",
        (list(commits),),
    ).fetchall()
    stages = {"commit_to_dispatch": [], "dispatch_to_send": [], "send_to_receipt": []}
    for row_id, dispatched_at, sent_at in rows:
        stages["commit_to_dispatch"].append((dispatched_at - commits[row_id]) * 1000)
        stages["dispatch_to_send"].append((sent_at - dispatched_at) * 1000)
        stages["send_to_receipt"].append((first_receipt[row_id] - sent_at) * 1000)
    result = {}
    for name, values in stages.items():
        values.sort()
        result[f"{name}_p50_ms"] = percentile(values, 50)
        result[f"{name}_p99_ms"] = percentile(values, 99)
    return result


def run_steady(run, rate, seconds):
    """Inserts at a fixed rate and measures commit-to-receipt latency per row."""
    rows = int(rate * seconds)
    commits = {}
    late_inserts = 0
    sampler = run.cpu_sampler()
    run.reset_statistics()
    sampler.start()
    with run.connection.cursor() as cursor:
        started = time.monotonic()
        for number in range(rows):
            due = started + number / rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            elif wait < -0.005:
                late_inserts += 1
            row_id, commit_time = run.insert(cursor, WARMUP_ROWS + number)
            commits[row_id] = commit_time
        insert_seconds = time.monotonic() - started
    run.wait_for_deliveries(rows, timeout=DELIVERY_TIMEOUT_SECONDS)
    cpu = sampler.stop()
    statements = run.statement_stats()
    first_receipt, counts = run.collect(commits, "steady")
    wal = run.wal_stats()

    latencies = sorted((first_receipt[row_id] - commits[row_id]) * 1000 for row_id in commits)
    return {
        "rows": rows,
        "achieved_insert_per_sec": rows / insert_seconds,
        **stage_latencies(run, commits, first_receipt),
        "inserts_more_than_5ms_late": late_inserts,
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p90_ms": percentile(latencies, 90),
        "latency_p99_ms": percentile(latencies, 99),
        "latency_max_ms": latencies[-1],
        **counts,
        **wal,
        "cpu_percent": cpu,
        "statements": statements,
    }


# ---------------------------------------------------------------------------
# Report


def other_cpu(outcome):
    return f"other processes used {outcome['cpu_percent']['other processes on the machine']:.0f} % CPU"


def format_spread(runs, key, digits):
    values = [run[key] for run in runs]
    return f"{min(values):,.{digits}f} / {statistics.median(values):,.{digits}f} / {max(values):,.{digits}f}"


def print_metric_table(options, results):
    burst_label = f"burst of {options.burst_rows:,}"
    backlog_label = f"backlog of {options.burst_rows:,}"
    steady_label = f"steady {options.steady_rate:g}/s for {options.steady_seconds:g} s"
    metrics = [
        ("burst", burst_label, "inserts/s committed (one client, autocommit)", "insert_per_sec", 0),
        ("burst", burst_label, "events/s delivered (rows / first commit to last receipt)", "events_per_sec", 0),
        ("burst", burst_label, "first commit to last receipt (s)", "first_commit_to_last_receipt_s", 2),
        ("burst", burst_label, "last receipt after last commit (s)", "last_receipt_after_last_commit_s", 3),
        ("burst", burst_label, "rows received before the last commit returned", "delivered_by_last_commit", 0),
        ("burst", burst_label, "commit to receipt p50 (ms)", "latency_p50_ms", 1),
        ("burst", burst_label, "commit to receipt p99 (ms)", "latency_p99_ms", 1),
        ("burst", burst_label, "commit to receipt max (ms)", "latency_max_ms", 1),
        ("backlog", backlog_label, "inserts/s committed with the service stopped (one client, autocommit)",
         "insert_per_sec_without_service", 0),
        ("backlog", backlog_label, "events/s delivered (rows / first to last receipt)", "drain_events_per_sec", 0),
        ("backlog", backlog_label, "service start to first receipt (s)", "start_to_first_receipt_s", 3),
        ("backlog", backlog_label, "service start to last receipt (s)", "start_to_last_receipt_s", 2),
        ("steady", steady_label, "inserts/s achieved", "achieved_insert_per_sec", 1),
        ("steady", steady_label, "commit to receipt p50 (ms)", "latency_p50_ms", 1),
        ("steady", steady_label, "commit to receipt p90 (ms)", "latency_p90_ms", 1),
        ("steady", steady_label, "commit to receipt p99 (ms)", "latency_p99_ms", 1),
        ("steady", steady_label, "commit to receipt max (ms)", "latency_max_ms", 1),
        ("steady", steady_label, "stage p50: commit to dispatch start (ms)", "commit_to_dispatch_p50_ms", 1),
        ("steady", steady_label, "stage p50: dispatch start to request start (ms)", "dispatch_to_send_p50_ms", 1),
        ("steady", steady_label, "stage p50: request start to receipt (ms)", "send_to_receipt_p50_ms", 1),
        ("steady", steady_label, "stage p99: commit to dispatch start (ms)", "commit_to_dispatch_p99_ms", 1),
        ("steady", steady_label, "stage p99: dispatch start to request start (ms)", "dispatch_to_send_p99_ms", 1),
        ("steady", steady_label, "stage p99: request start to receipt (ms)", "send_to_receipt_p99_ms", 1),
    ]
    for scenario, label in (("burst", burst_label), ("backlog", backlog_label), ("steady", steady_label)):
        for name, key in (("duplicate requests", "duplicates"), ("deliveries retried", "retried"),
                          ("deliveries not succeeded", "not_succeeded")):
            metrics.append((scenario, label, name, key, 0))

    print(f"Results over {options.runs} runs of each scenario (min / median / max):")
    print()
    print("| Scenario | Metric | min / median / max |")
    print("| --- | --- | --- |")
    order = {"burst": 0, "backlog": 1, "steady": 2}
    for scenario, label, metric, key, digits in sorted(metrics, key=lambda item: order[item[0]]):
        print(f"| {label} | {metric} | {format_spread(results[scenario], key, digits)} |")


def print_cpu_table(results):
    print("CPU use during the measurement, median over runs (100 % = one of the cores):")
    print()
    print("| Process | burst | backlog | steady |")
    print("| --- | --- | --- | --- |")
    for name in results["burst"][0]["cpu_percent"]:
        cells = [f"{statistics.median(run['cpu_percent'][name] for run in results[s]):.0f} %" for s in ("burst", "backlog", "steady")]
        print(f"| {name} | {' | '.join(cells)} |")


def print_wal_table(results):
    print("WAL flushes (pg_stat_wal with track_wal_io_timing), median over runs:")
    print()
    print("| Scenario | WAL writes | WAL flushes | flush time total (ms) | ms per flush |")
    print("| --- | --- | --- | --- | --- |")
    for scenario in ("burst", "backlog", "steady"):
        runs = results[scenario]
        writes = statistics.median(run["wal_writes"] for run in runs)
        syncs = statistics.median(run["wal_syncs"] for run in runs)
        sync_ms = statistics.median(run["wal_sync_ms"] for run in runs)
        per_sync = statistics.median(run["wal_sync_ms"] / run["wal_syncs"] if run["wal_syncs"] else 0.0 for run in runs)
        print(f"| {scenario} | {writes:,.0f} | {syncs:,.0f} | {sync_ms:,.0f} | {per_sync:.3f} |")


def print_statement_table(results):
    print("PostgreSQL time by statement (pg_stat_statements, the 5 largest), mean per run:")
    print()
    print("| Scenario | Statement | calls | planning ms | execution ms | planning + execution ms per call |")
    print("| --- | --- | --- | --- | --- | --- |")
    for scenario in ("burst", "backlog", "steady"):
        runs = results[scenario]
        totals = {}
        for run in runs:
            for name, (calls, plan_ms, exec_ms) in run["statements"].items():
                entry = totals.setdefault(name, [0, 0.0, 0.0])
                entry[0] += calls
                entry[1] += plan_ms
                entry[2] += exec_ms
        for name, (calls, plan_ms, exec_ms) in sorted(totals.items(), key=lambda item: -(item[1][1] + item[1][2]))[:5]:
            per_call = (plan_ms + exec_ms) / calls if calls else 0.0
            print(
                f"| {scenario} | {name} | {calls / len(runs):,.0f} | {plan_ms / len(runs):,.0f} | "
                f"{exec_ms / len(runs):,.0f} | {per_call:.3f} |"
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True, help="path of the action-triggers executable")
    parser.add_argument("--pg-port", type=int, required=True, help="PostgreSQL port on 127.0.0.1")
    parser.add_argument("--postmaster-pid", type=int, required=True, help="PID of the PostgreSQL postmaster, for CPU accounting")
    parser.add_argument("--receiver-port", type=int, required=True, help="port of bench/receiver.py on 127.0.0.1")
    parser.add_argument("--receiver-pid", type=int, required=True, help="PID of bench/receiver.py, for CPU accounting")
    parser.add_argument("--work-dir", required=True, help="directory for the settings file, service logs and results.json")
    parser.add_argument("--runs", type=int, default=5, help="runs of each scenario (default 5)")
    parser.add_argument("--burst-rows", type=int, default=10_000, help="rows in the burst and backlog scenarios (default 10000)")
    parser.add_argument("--steady-rate", type=float, default=200, help="inserts per second in the steady scenario (default 200)")
    parser.add_argument("--steady-seconds", type=float, default=15, help="length of the steady scenario in seconds (default 15)")
    options = parser.parse_args()
    # SystemExit unwinds through each Run, which stops its service and drops its database.
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))

    work_dir = Path(options.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "settings.json").write_text(json.dumps({"poll_interval_secs": 1, "max_webhook_timeout": 10}) + "\n")

    admin = psycopg.connect(
        f"postgresql://postgres@127.0.0.1:{options.pg_port}/postgres", autocommit=True, application_name="bench-admin"
    )
    admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    results = {"burst": [], "backlog": [], "steady": []}
    ignored_sigterm = 0
    try:
        # The scenarios take turns, so a slow phase of the shared machine hits all of them.
        for number in range(1, options.runs + 1):
            with Run(options, admin, f"bench_burst_{number}") as run:
                outcome = run_burst(run, options.burst_rows)
            ignored_sigterm += run.ignored_sigterm
            results["burst"].append(outcome)
            print(
                f"run {number} burst:   {outcome['insert_per_sec']:,.0f} inserts/s, {outcome['events_per_sec']:,.0f} events/s delivered, "
                f"last receipt {outcome['last_receipt_after_last_commit_s']:.3f} s after the last commit; {other_cpu(outcome)}",
                flush=True,
            )

            with Run(options, admin, f"bench_backlog_{number}", start_service=False) as run:
                outcome = run_backlog(run, options.burst_rows)
            ignored_sigterm += run.ignored_sigterm
            results["backlog"].append(outcome)
            print(
                f"run {number} backlog: {outcome['insert_per_sec_without_service']:,.0f} inserts/s with the service stopped, "
                f"{outcome['drain_events_per_sec']:,.0f} events/s delivered, "
                f"last receipt {outcome['start_to_last_receipt_s']:.2f} s after service start; {other_cpu(outcome)}",
                flush=True,
            )

            with Run(options, admin, f"bench_steady_{number}") as run:
                outcome = run_steady(run, options.steady_rate, options.steady_seconds)
            ignored_sigterm += run.ignored_sigterm
            results["steady"].append(outcome)
            print(
                f"run {number} steady:  {outcome['achieved_insert_per_sec']:.1f} inserts/s, latency p50 {outcome['latency_p50_ms']:.1f} ms, "
                f"p90 {outcome['latency_p90_ms']:.1f} ms, p99 {outcome['latency_p99_ms']:.1f} ms, max {outcome['latency_max_ms']:.1f} ms; "
                f"{other_cpu(outcome)}",
                flush=True,
            )
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        (work_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        admin.close()

    print()
    print_metric_table(options, results)
    print()
    print_cpu_table(results)
    print()
    print_statement_table(results)
    print()
    print_wal_table(results)
    print()
    if ignored_sigterm:
        print(
            f"warning: action-triggers was still running {STOP_TIMEOUT_SECONDS} s after SIGTERM in {ignored_sigterm} of "
            f"{3 * options.runs} runs and was killed with SIGKILL (after all measured rows had arrived)"
        )
    print(f"Per-run results: {work_dir / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
