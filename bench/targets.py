"""Measure action-triggers against its targets, side by side with the ancestor and PostgreSQL alone.

bench/suite starts PostgreSQL and the receiver and runs this program; the
scripts in bench/targets/ run it for one target each. Every run of every
measurement gets a fresh database copied from a template, and the measurements
of one run take turns (ours, the ancestor's, PostgreSQL alone), so a noisy
minute of the shared machine hits both sides of each ratio. Each target prints
its figure, its ratio and min / median / max over the runs, and the program
exits with status 1 when a target is missed (median over the runs).

Measurements (docs/benchmarks.md describes each):

- insert_pg: 10,000 single-row INSERTs from one psycopg client, one transaction
  each, no config.
- insert_ours: the same with a post_save webhook config and the service running.
- insert_*_pipelined: the same INSERTs and transactions, sent through libpq's
  pipeline mode, so the client does not wait for one commit before it sends the
  next INSERT (pipelined_inserts).
- django_*: 10,000 Customer saves through the Django ORM (bench/django), with and
  without a config, for the service and for the ancestor.
- drain: 100,000 events in the outbox when the service starts, with RSS sampled.
- idle: process start to the first /readyz 200, then RSS after 2 s idle.
- pgbench_*: pgbench TPC-B with and without a post_save config on pgbench_accounts.
- *_capture, *_floor, *_webhooks: the bounds of the burst, app-cost and pgbench
  targets. The loop or pgbench runs with the config's capture trigger and no
  service: alone (capture), with the minimal SQL consumer (floor), or with the
  minimal SQL consumer and bench/lib/webhook_poster.c sending each event's row
  image to the receiver (webhooks), see CaptureOnly.
- steady: 200 inserts/s for 15 s, latency per row (bench.py's run_steady).
- templates_*: a backlog of Sale events drained with and without a payload template.
"""

import argparse
import json
import os
import re
import selectors
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
from psycopg import pq, sql

import bench
from bench import (
    BenchError, ReceiverClient, busy_cpu_seconds, cpu_seconds, percentile, postgres_processes, process_stat_fields,
)

BURST_ROWS = 10_000
PIPELINE_WINDOW = 64
PIPELINED_INSERT_SQL = b"INSERT INTO myapp_customer (name, email) VALUES ($1, $2) RETURNING id"
DRAIN_ROWS = 100_000
TEMPLATE_ROWS = 30_000
IDLE_SECONDS = 2.0
READY_TIMEOUT_SECONDS = 10
PGBENCH_SCALE = 10
PGBENCH_CLIENTS = 4
PGBENCH_SECONDS = 15
STEADY_RATE = 200
STEADY_SECONDS = 15
DJANGO_WARM_UP = 100

PLAIN_TEMPLATE = "bench_template_plain"
ANCESTOR_TEMPLATE = "bench_template_ancestor"
PGBENCH_TEMPLATE = "bench_template_pgbench"

SALE_TEMPLATE = {
    "id": "{{ instance.id }}",
    "customer": "{{ instance.customer.name }}",
    "product": "{{ instance.product.name }}",
    "quantity": "{{ instance.quantity }}",
}


# ---------------------------------------------------------------------------
# Environment


class Suite:
    """The options, the admin connection and the helpers every measurement uses."""

    def __init__(self, options):
        self.options = options
        self.admin = psycopg.connect(self.url("postgres"), autocommit=True, application_name="bench-admin")
        self.receiver = ReceiverClient(options.receiver_port)
        self.receiver_url = f"http://127.0.0.1:{options.receiver_port}/hook"
        self.service_port = int(os.environ["ACTION_TRIGGERS_LISTEN"].rsplit(":", 1)[1])

    def url(self, database):
        return f"postgresql://postgres@127.0.0.1:{self.options.pg_port}/{database}"

    def django(self, database, ancestor, *arguments):
        """Runs bench/django/loadgen.py with the ancestor's venv and returns its standard output."""
        environment = dict(os.environ)
        environment["BENCH_DATABASE_URL"] = self.url(database)
        environment["BENCH_RECEIVER_URL"] = self.receiver_url
        environment["BENCH_ANCESTOR"] = "1" if ancestor else "0"
        completed = subprocess.run(
            [self.options.django_python, str(Path(__file__).parent / "django" / "loadgen.py"), *arguments],
            env=environment, capture_output=True, text=True, timeout=900,
        )
        if completed.returncode != 0:
            raise BenchError(f"loadgen.py {arguments[0]} failed with status {completed.returncode}: {completed.stderr[-2000:]}")
        return completed.stdout

    def service_environment(self, database):
        environment = dict(os.environ)
        environment.update({
            "DATABASE_URL": self.url(database),
            "ACTION_TRIGGERS_SETTINGS": str(Path(self.options.work_dir) / "settings.json"),
            "ACTION_TRIGGERS_LOG_LEVEL": "warning",
        })
        return environment

    def create_database(self, name, template=None):
        self.admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if template is None:
            self.admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        else:
            self.admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))

    def drop_database(self, name):
        self.admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def migrate_service(self, database):
        completed = subprocess.run(
            [self.options.binary, "migrate"], env=self.service_environment(database), capture_output=True, text=True, timeout=60
        )
        if completed.returncode != 0:
            raise BenchError(f"action-triggers migrate failed with status {completed.returncode}: {completed.stderr.strip()}")

    def create_templates(self, needed):
        """Creates the template databases that the measurements copy, once per program run."""
        if "plain" in needed:
            self.create_database(PLAIN_TEMPLATE)
            self.django(PLAIN_TEMPLATE, False, "migrate")
            self.migrate_service(PLAIN_TEMPLATE)
        if "ancestor" in needed:
            self.create_database(ANCESTOR_TEMPLATE)
            self.django(ANCESTOR_TEMPLATE, True, "migrate")
        if "pgbench" in needed:
            self.create_database(PGBENCH_TEMPLATE)
            subprocess.run(
                ["pgbench", "--initialize", "--quiet", f"--scale={PGBENCH_SCALE}", self.url(PGBENCH_TEMPLATE)],
                check=True, capture_output=True, timeout=300,
            )
            self.migrate_service(PGBENCH_TEMPLATE)
            with psycopg.connect(self.url(PGBENCH_TEMPLATE), autocommit=True) as connection:
                connection.execute("SELECT action_triggers.register_model('bench', 'account', 'pgbench_accounts'::regclass)")
            with psycopg.connect(self.url(PGBENCH_TEMPLATE), autocommit=True) as connection:
                connection.execute("VACUUM ANALYZE")

    def drop_templates(self):
        for name in (PLAIN_TEMPLATE, ANCESTOR_TEMPLATE, PGBENCH_TEMPLATE):
            self.drop_database(name)


def webhook_config(app_label, model_name, url, payload=None):
    config = {
        "config_signals": [{"signal": "post_save"}],
        "content_types": [{"app_label": app_label, "model_name": model_name}],
        "webhooks": [{"url": url, "http_method": "POST"}],
        "active": True,
    }
    if payload is not None:
        config["payload"] = payload
    return config


class Service:
    """One `action-triggers serve` process against one database."""

    def __init__(self, suite, database):
        self.suite = suite
        self.database = database
        self.log_path = Path(suite.options.work_dir) / f"{database}.service.log"
        self.pid_path = Path(suite.options.work_dir) / "service.pid"
        self.process = None
        self.started_at = None

    def start(self, wait_ready=True):
        """Starts the service and returns the seconds from start to the first /readyz 200."""
        with open(self.log_path, "w") as log:
            self.started_at = time.time()
            self.process = subprocess.Popen(
                [self.suite.options.binary, "serve"], env=self.suite.service_environment(self.database), stdout=log, stderr=log
            )
        # bench/lib/setup.sh kills this PID on exit if this program dies first.
        self.pid_path.write_text(f"{self.process.pid}\n")
        if not wait_ready:
            return None
        return self.wait_ready()

    def wait_ready(self):
        url = f"http://127.0.0.1:{self.suite.service_port}/readyz"
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return time.time() - self.started_at
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.002)
        raise BenchError(f"action-triggers did not return 200 from /readyz within {READY_TIMEOUT_SECONDS} s; see {self.log_path}")

    def check_alive(self):
        if self.process is not None and self.process.poll() is not None:
            raise BenchError(f"action-triggers exited with status {self.process.returncode}; see {self.log_path}")

    def metric_samples(self, name):
        """Returns the samples of one metric from /metrics, as a dict from the label text to the value."""
        url = f"http://127.0.0.1:{self.suite.service_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        samples = {}
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                series, _, value = line.rpartition(" ")
                samples[series[len(name):]] = float(value)
        return samples

    def held_dispatches(self):
        """Returns the held dispatch counts from /metrics, settled and timed out.

        They show whether the dispatcher held its dispatches (docs/operations.md,
        "Held dispatches"), which decides how often each delivery is written.
        """
        samples = self.metric_samples("action_triggers_held_dispatches_total")
        return {
            "held_dispatches_settled": int(samples.get('{outcome="settled"}', 0)),
            "held_dispatches_timed_out": int(samples.get('{outcome="timed_out"}', 0)),
        }

    def rss_bytes(self, field="VmRSS"):
        """Returns the resident set size (or another /proc status field in kB) in bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise BenchError(f"/proc/{self.process.pid}/status has no {field}")

    def stop(self):
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=bench.STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.pid_path.unlink(missing_ok=True)


class Database:
    """A fresh database copied from a template, with configs, and optionally a running service."""

    def __init__(self, suite, name, template, configs=()):
        self.suite = suite
        self.name = name
        self.template = template
        self.configs = configs
        self.connection = None
        self.service = None

    def __enter__(self):
        self.suite.create_database(self.name, self.template)
        self.connection = psycopg.connect(self.suite.url(self.name), autocommit=True, application_name=bench.LOADGEN_APPLICATION)
        for config in self.configs:
            self.connection.execute("SELECT action_triggers.create_config(%s::jsonb)", (json.dumps(config),))
        # Copying a template writes the whole database to the WAL (PostgreSQL 15's
        # WAL_LOG strategy), which brings the next checkpoint closer. A checkpoint during a
        # measurement makes every first write to a page log the full page, so each one
        # starts right after a checkpoint instead of wherever the last one fell.
        self.connection.execute("CHECKPOINT")
        self.suite.receiver.reset()
        return self

    def __exit__(self, *exc_info):
        if self.service is not None:
            self.service.stop()
        self.connection.close()
        self.suite.drop_database(self.name)
        return False

    def start_service(self, wait_ready=True):
        self.service = Service(self.suite, self.name)
        return self.service.start(wait_ready)


# The capture trigger skips its NOTIFY while a session holds this two-key advisory
# lock ("dispatching", docs/operations.md), as it does while a busy dispatcher polls.
DISPATCHING_LOCK = (1633907826, 1)

# The database writes that every event needs under the delivery log's contract:
# the outbox row marked dispatched, a delivery and its attempt. The minimal
# consumer writes them in batches of up to 1,000 events every 20 ms, the longest
# wait between the dispatcher's polls, and sends nothing. It writes each delivery
# once, already finished, where the service writes it claimed and then updates it.
# The statement ends with CTEs that take the batch, mark it and create the
# deliveries as `created`; {batch_columns} are the columns the batch reads.
CONSUMER_WRITES_SQL = """
WITH batch AS (
    SELECT {batch_columns} FROM action_triggers.event
    WHERE dispatched_at IS NULL
    ORDER BY id
    LIMIT 1000
    FOR UPDATE SKIP LOCKED
), marked AS (
    UPDATE action_triggers.event e SET dispatched_at = now()
    FROM batch b WHERE e.id = b.id
    RETURNING e.id
), created AS (
    INSERT INTO action_triggers.delivery
        (event_id, config_id, webhook_id, url, http_method, headers, signing_secrets, status, attempts, completed_at)
    SELECT m.id, w.config_id, w.id, w.url, w.http_method, w.headers, w.signing_secrets, 'succeeded', 1, now()
    FROM marked m CROSS JOIN (SELECT * FROM action_triggers.webhook ORDER BY id LIMIT 1) AS w
    RETURNING id
)"""
ATTEMPTS_INSERT_SQL = """INSERT INTO action_triggers.delivery_attempt (delivery_id, attempt, started_at, duration_ms, status_code, outcome)
SELECT id, 1, now(), 0, 200, 'succeeded' FROM created"""
MINIMAL_CONSUMER_SQL = CONSUMER_WRITES_SQL.format(batch_columns="id") + "\n" + ATTEMPTS_INSERT_SQL + "\n"
# The same writes, returning the row image of each event in event order, for the
# consumer that also sends the webhooks.
WEBHOOK_CONSUMER_SQL = (
    CONSUMER_WRITES_SQL.format(batch_columns="id, coalesce(new_row, old_row) AS row_image")
    + ", attempts AS (\n" + ATTEMPTS_INSERT_SQL + "\n)\nSELECT row_image::text FROM batch ORDER BY id\n"
)
MINIMAL_CONSUMER_INTERVAL_SECONDS = 0.02
CONSUMERS = (None, "sql", "webhooks")
# The part of a bound measurement's name that names its consumer.
BOUND_KINDS = {None: "capture", "sql": "floor", "webhooks": "webhooks"}


class CaptureOnly:
    """Runs a database's capture trigger without the service, for the bounds of the targets.

    A side session holds the "dispatching" lock, so every capture pays for its
    outbox row and its two lock checks, and sends no NOTIFY. With `consumer`
    "sql", a thread runs MINIMAL_CONSUMER_SQL on its own connection, with
    `synchronous_commit = off` like the service's connections. What the
    application keeps then bounds what any consumer that writes the delivery log
    could leave it, before one webhook is sent. With "webhooks", the thread runs
    WEBHOOK_CONSUMER_SQL instead and pipes each row image to the webhook poster,
    which POSTs it to the receiver. That bounds what a consumer could leave the
    application if it also sends each event to this receiver through libcurl.
    """

    def __init__(self, suite, database, consumer):
        if consumer not in CONSUMERS:
            raise ValueError(f"unknown consumer {consumer!r}, expected one of {CONSUMERS}")
        self.suite = suite
        self.database = database
        self.consumer = consumer
        self.consumed = 0
        self.sent = 0
        self.stop_event = threading.Event()
        self.thread = None
        self.error = None

    def __enter__(self):
        self.lock_connection = psycopg.connect(self.suite.url(self.database.name), autocommit=True)
        self.lock_connection.execute("SELECT pg_advisory_lock(%s, %s)", DISPATCHING_LOCK)
        self.poster = None
        if self.consumer == "webhooks":
            # Started here rather than in the thread, so that its PID is known before
            # the measurement starts.
            self.poster = subprocess.Popen(
                [self.suite.options.webhook_poster, self.suite.receiver_url],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
        if self.consumer is not None:
            self.thread = threading.Thread(target=self.consume, name="minimal-consumer")
            self.thread.start()
        return self

    def consume(self):
        # prepare_threshold=None plans the statement at every execution. With psycopg's
        # prepared statement, the plan cached while the outbox was nearly empty scanned
        # the whole outbox once per event of a batch. Under pgbench a statement then took
        # up to 1.4 s, and the consumer fell behind until an ANALYZE replaced the plan.
        try:
            url = self.suite.url(self.database.name)
            with psycopg.connect(url, autocommit=True, prepare_threshold=None) as connection:
                connection.execute("SET synchronous_commit = off")
                if self.consumer == "webhooks":
                    self.consume_sending(connection)
                    return
                while not self.stop_event.is_set():
                    self.consumed += max(connection.execute(MINIMAL_CONSUMER_SQL).rowcount, 0)
                    self.stop_event.wait(MINIMAL_CONSUMER_INTERVAL_SECONDS)
        except (psycopg.Error, OSError, BenchError) as error:
            self.error = error

    def consume_sending(self, connection):
        """Runs WEBHOOK_CONSUMER_SQL and hands every row image to the webhook poster."""
        poster = self.poster
        try:
            while not self.stop_event.is_set():
                bodies = [row[0] for row in connection.execute(WEBHOOK_CONSUMER_SQL).fetchall()]
                if bodies:
                    poster.stdin.write("".join(body + "\n" for body in bodies).encode())
                    poster.stdin.flush()
                    self.consumed += len(bodies)
                self.stop_event.wait(MINIMAL_CONSUMER_INTERVAL_SECONDS)
        finally:
            _output, errors = poster.communicate(timeout=120)
        summary = errors.decode(errors="replace").strip()
        match = re.search(r"sent (\d+), failed (\d+)", summary)
        if poster.returncode != 0 or match is None:
            raise BenchError(f"the webhook poster exited with status {poster.returncode}: {summary[-2000:]}")
        self.sent = int(match.group(1))
        if self.sent != self.consumed:
            raise BenchError(f"the webhook poster sent {self.sent} webhooks for {self.consumed} events")

    def cpu_groups(self):
        """Returns the CPU group of the webhook poster for CPUGroups, or none without it."""
        return {} if self.poster is None else {"webhook poster": {self.poster.pid}}

    def __exit__(self, *exc_info):
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join()
        if self.poster is not None and self.poster.poll() is None:
            # The thread closes the poster's input when it ends. This covers a thread
            # that failed before it ran.
            self.poster.kill()
            self.poster.wait()
        self.lock_connection.close()
        if self.error is not None and exc_info[0] is None:
            raise BenchError(f"the minimal consumer failed: {self.error}")
        return False


def wait_for_receipts(suite, expected, key="distinct_ids", service=None, timeout=300):
    """Waits until the receiver counts `expected` (distinct row ids or requests) and returns the count."""
    deadline = time.monotonic() + timeout
    while True:
        seen = suite.receiver.count()[key]
        if seen >= expected:
            return seen
        if time.monotonic() > deadline:
            raise BenchError(f"only {seen} of {expected} webhooks arrived within {timeout} s")
        if service is not None:
            service.check_alive()
        time.sleep(0.02)


def receipt_times(suite):
    return [receipt for receipt, _row_id in suite.receiver.records()]


class CPUGroups:
    """CPU seconds of named process groups between start() and stop(), as percent of one core."""

    def __init__(self, suite, groups):
        self.suite = suite
        self.groups = groups

    def pids(self):
        groups = {name: set(pids) for name, pids in self.groups.items()}
        groups["postgres"] = set(postgres_processes(self.suite.options.postmaster_pid))
        groups["receiver"] = {self.suite.options.receiver_pid}
        return groups

    def read(self):
        return {name: {pid: cpu_seconds(pid) for pid in pids} for name, pids in self.pids().items()}

    def start(self):
        self.before = self.read()
        self.machine_before = busy_cpu_seconds()
        self.started = time.monotonic()

    def stop(self):
        after = self.read()
        wall = time.monotonic() - self.started
        machine = busy_cpu_seconds() - self.machine_before
        usage = {}
        started = []
        for name, pids in after.items():
            used = 0.0
            for pid, seconds in pids.items():
                # An exited process that its parent has not reaped yet, such as a
                # backend of pgbench just after pgbench returned, is left out, as one
                # that is gone is: counting it added a whole backend's CPU to some runs.
                if seconds is None or process_state(pid) == "Z":
                    continue
                earlier = self.before.get(name, {}).get(pid)
                if earlier is None:
                    started.append(f"{process_title(pid)}: {round(100 * seconds / wall, 1)}")
                used += seconds - (earlier or 0.0)
            usage[name] = round(100 * used / wall, 1)
        usage["whole machine"] = round(100 * machine / wall, 1)
        # Processes that started during the measurement and still ran at its end, with
        # their share of it, to tell what raised a group in one run and not in another.
        if started:
            usage["started during the measurement"] = started
        return usage


def process_state(pid):
    """Returns the state letter of a process ("R", "S", "Z", ...), or None when it is gone."""
    fields = process_stat_fields(pid)
    return None if fields is None else fields[0]


def process_title(pid):
    """Returns the command line of a process as `ps` shows it, or "gone"."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except (FileNotFoundError, ProcessLookupError):
        return "gone"


# ---------------------------------------------------------------------------
# Measurements. Each returns a dict of figures for one run.


def psycopg_inserts(connection, rows, first_number=0):
    """Inserts rows one transaction each and returns (start time, {id: commit time})."""
    commits = {}
    with connection.cursor() as cursor:
        started = time.time()
        for number in range(first_number, first_number + rows):
            cursor.execute(bench.INSERT_SQL, (f"bench customer {number:06d}", f"customer{number:06d}@example.com"))
            commits[cursor.fetchone()[0]] = time.time()
    return started, commits


def pipelined_inserts(connection, rows, first_number=0):
    """Inserts rows one transaction each through libpq's pipeline mode and returns what psycopg_inserts does.

    Each INSERT is followed by a Sync, so it commits on its own, as in the loop
    above, but the client sends the next ones without waiting for the result.
    Up to PIPELINE_WINDOW transactions are in flight. A row's commit time is
    when its Sync's result arrives, which the server sends after the commit.
    """
    pgconn = connection.pgconn
    statement = b"bench_pipelined_insert"
    prepared = pgconn.prepare(statement, PIPELINED_INSERT_SQL)
    if prepared.status != pq.ExecStatus.COMMAND_OK:
        raise BenchError(f"preparing the pipelined INSERT failed: {prepared.error_message.decode(errors='replace')}")

    commits = {}
    selector = selectors.DefaultSelector()
    pgconn.enter_pipeline_mode()
    pgconn.nonblocking = 1
    try:
        started = time.time()
        sent = synced = 0
        row_id = None
        while synced < rows:
            while sent < rows and sent - synced < PIPELINE_WINDOW:
                number = first_number + sent
                pgconn.send_query_prepared(
                    statement, [f"bench customer {number:06d}".encode(), f"customer{number:06d}@example.com".encode()],
                )
                pgconn.pipeline_sync()
                sent += 1

            events = selectors.EVENT_READ
            if pgconn.flush() == 1:
                events |= selectors.EVENT_WRITE
            selector.register(pgconn.socket, events)
            selector.select()
            selector.unregister(pgconn.socket)
            pgconn.consume_input()

            # Between the results of two statements, get_result returns None
            # once, so two in a row mean nothing more has arrived yet.
            empty_results = 0
            while not pgconn.is_busy() and empty_results < 2:
                result = pgconn.get_result()
                if result is None:
                    empty_results += 1
                    continue
                empty_results = 0
                if result.status == pq.ExecStatus.TUPLES_OK:
                    row_id = int(result.get_value(0, 0))
                elif result.status == pq.ExecStatus.PIPELINE_SYNC:
                    commits[row_id] = time.time()
                    synced += 1
                else:
                    message = result.error_message.decode(errors="replace")
                    raise BenchError(f"a pipelined INSERT failed ({pq.ExecStatus(result.status).name}): {message}")
    finally:
        selector.close()
    # Only after success: leaving pipeline mode with results pending raises, which
    # would hide the error of a failed INSERT.
    pgconn.nonblocking = 0
    pgconn.exit_pipeline_mode()
    pgconn.exec_(b"DEALLOCATE " + statement)
    return started, commits


INSERT_CLIENTS = {"loop": psycopg_inserts, "pipeline": pipelined_inserts}


def measure_insert_pg(suite, run, client):
    with Database(suite, f"bench_insert_pg_{client}_{run}", PLAIN_TEMPLATE) as database:
        cpu = CPUGroups(suite, {})
        cpu.start()
        started, commits = INSERT_CLIENTS[client](database.connection, BURST_ROWS)
        usage = cpu.stop()
    return {"inserts_per_sec": BURST_ROWS / (max(commits.values()) - started), "cpu_percent": usage}


def measure_insert_ours(suite, run, client):
    config = webhook_config("myapp", "Customer", suite.receiver_url)
    with Database(suite, f"bench_insert_ours_{client}_{run}", PLAIN_TEMPLATE, [config]) as database:
        database.start_service()
        psycopg_inserts(database.connection, bench.WARMUP_ROWS, first_number=900_000)
        wait_for_receipts(suite, bench.WARMUP_ROWS, service=database.service)
        suite.receiver.reset()

        cpu = CPUGroups(suite, {"action-triggers": {database.service.process.pid}})
        cpu.start()
        started, commits = INSERT_CLIENTS[client](database.connection, BURST_ROWS)
        wait_for_receipts(suite, BURST_ROWS, service=database.service)
        usage = cpu.stop()
        last_receipt = max(receipt_times(suite))
    first_commit = min(commits.values())
    return {
        "inserts_per_sec": BURST_ROWS / (max(commits.values()) - started),
        "events_per_sec": BURST_ROWS / (last_receipt - first_commit),
        "last_receipt_after_last_commit_s": last_receipt - max(commits.values()),
        "cpu_percent": usage,
    }


def measure_insert_bound(suite, run, consumer, client):
    config = webhook_config("myapp", "Customer", suite.receiver_url)
    kind = BOUND_KINDS[consumer]
    with Database(suite, f"bench_insert_{kind}_{client}_{run}", PLAIN_TEMPLATE, [config]) as database:
        with CaptureOnly(suite, database, consumer) as capture:
            started, commits = INSERT_CLIENTS[client](database.connection, BURST_ROWS)
        return {"inserts_per_sec": BURST_ROWS / (max(commits.values()) - started), "events_consumed": capture.consumed}


def django_saves(suite, database, ancestor, service=None, cpu_groups=None):
    """Runs the timed Django save loop and returns its figures, with events/s when webhooks arrive."""
    cpu_groups = dict(cpu_groups or {})
    if service is not None:
        cpu_groups["action-triggers"] = {service.process.pid}
    cpu = CPUGroups(suite, cpu_groups)
    cpu.start()
    output = suite.django(
        database.name, ancestor, "saves", "--rows", str(BURST_ROWS), "--warm-up", str(DJANGO_WARM_UP),
        "--reset-url", f"http://127.0.0.1:{suite.options.receiver_port}/_bench/reset",
    )
    result = json.loads(output)
    commit_times = result["commit_times"]
    figures = {
        "saves_per_sec": result["rows"] / (commit_times[-1] - result["started"]),
        "loadgen_cpu_seconds": result["cpu_seconds"],
    }
    return figures, commit_times, cpu


def finish_delivered(suite, figures, commit_times, cpu, service=None):
    """Waits for one webhook per save and adds events/s (rows / first commit to last receipt)."""
    wait_for_receipts(suite, len(commit_times), key="requests", service=service)
    figures["cpu_percent"] = cpu.stop()
    last_receipt = max(receipt_times(suite))
    figures["events_per_sec"] = len(commit_times) / (last_receipt - commit_times[0])
    figures["last_receipt_after_last_commit_s"] = last_receipt - commit_times[-1]
    return figures


def measure_django_ours_none(suite, run):
    with Database(suite, f"bench_django_ours_none_{run}", PLAIN_TEMPLATE) as database:
        database.start_service()
        figures, _commit_times, cpu = django_saves(suite, database, False, database.service)
        figures["cpu_percent"] = cpu.stop()
    return figures


def measure_django_ours_config(suite, run):
    config = webhook_config("myapp", "Customer", suite.receiver_url)
    with Database(suite, f"bench_django_ours_config_{run}", PLAIN_TEMPLATE, [config]) as database:
        database.start_service()
        figures, commit_times, cpu = django_saves(suite, database, False, database.service)
        figures = finish_delivered(suite, figures, commit_times, cpu, database.service)
        figures.update(database.service.held_dispatches())
        figures["dispatch_statements"] = dispatch_statements(suite, database.name)
        return figures


def dispatch_statements(suite, database_name):
    """Returns how many dispatch statements ran in a database, held or not, from pg_stat_statements.

    With the events, it separates a run whose dispatcher polled every few milliseconds,
    with few events per dispatch, from one that held larger batches.
    """
    row = suite.admin.execute(
        "SELECT coalesce(sum(s.calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
        "WHERE d.datname = %s AND s.query LIKE 'WITH batch AS%%'",
        (database_name,),
    ).fetchone()
    return int(row[0])


def measure_django_bound(suite, run, consumer):
    config = webhook_config("myapp", "Customer", suite.receiver_url)
    kind = BOUND_KINDS[consumer]
    with Database(suite, f"bench_django_{kind}_{run}", PLAIN_TEMPLATE, [config]) as database:
        with CaptureOnly(suite, database, consumer) as capture:
            figures, _commit_times, cpu = django_saves(suite, database, False, cpu_groups=capture.cpu_groups())
            figures["cpu_percent"] = cpu.stop()
        figures["events_consumed"] = capture.consumed
        figures["webhooks_sent"] = capture.sent
    return figures


def measure_django_ancestor_none(suite, run):
    with Database(suite, f"bench_django_ancestor_none_{run}", ANCESTOR_TEMPLATE) as database:
        figures, _commit_times, cpu = django_saves(suite, database, True)
        figures["cpu_percent"] = cpu.stop()
    return figures


def measure_django_ancestor_config(suite, run):
    with Database(suite, f"bench_django_ancestor_config_{run}", ANCESTOR_TEMPLATE) as database:
        suite.django(database.name, True, "ancestor-config", "--receiver-url", suite.receiver_url)
        figures, commit_times, cpu = django_saves(suite, database, True)
        return finish_delivered(suite, figures, commit_times, cpu)


def sample_rss(service, stop_event, samples):
    while not stop_event.is_set():
        try:
            samples.append(service.rss_bytes())
        except (FileNotFoundError, ProcessLookupError, BenchError):
            return
        stop_event.wait(0.02)


def measure_drain(suite, run):
    config = webhook_config("myapp", "Customer", suite.receiver_url)
    with Database(suite, f"bench_drain_{run}", PLAIN_TEMPLATE, [config]) as database:
        # One statement fills the outbox: the capture trigger writes one event per row.
        database.connection.execute(
            "INSERT INTO myapp_customer (name, email) "
            "SELECT 'bench customer ' || i, 'customer' || i || '@example.com' FROM generate_series(1, %s) AS i",
            (DRAIN_ROWS,),
        )
        database.connection.execute("VACUUM ANALYZE action_triggers.event")
        database.start_service(wait_ready=False)
        samples = []
        stop_event = threading.Event()
        sampler = threading.Thread(target=sample_rss, args=(database.service, stop_event, samples))
        sampler.start()
        cpu = CPUGroups(suite, {"action-triggers": {database.service.process.pid}})
        cpu.start()
        try:
            wait_for_receipts(suite, DRAIN_ROWS, service=database.service)
        finally:
            stop_event.set()
            sampler.join()
        usage = cpu.stop()
        peak = database.service.rss_bytes("VmHWM")
        times = receipt_times(suite)
        started_at = database.service.started_at
    return {
        "drain_events_per_sec": DRAIN_ROWS / (max(times) - min(times)),
        "start_to_last_receipt_s": max(times) - started_at,
        "rss_max_sampled_mb": max(samples) / 2**20 if samples else 0.0,
        "rss_peak_mb": peak / 2**20,
        "cpu_percent": usage,
    }


def measure_idle(suite, run):
    config = webhook_config("myapp", "Customer", suite.receiver_url)
    with Database(suite, f"bench_idle_{run}", PLAIN_TEMPLATE, [config]) as database:
        ready_seconds = database.start_service()
        time.sleep(IDLE_SECONDS)
        rss = database.service.rss_bytes()
    return {"start_to_ready_s": ready_seconds, "rss_idle_mb": rss / 2**20}


def run_pgbench(suite, database):
    completed = subprocess.run(
        ["pgbench", "--no-vacuum", f"--client={PGBENCH_CLIENTS}", "--jobs=2", f"--time={PGBENCH_SECONDS}", suite.url(database)],
        capture_output=True, text=True, timeout=PGBENCH_SECONDS + 120,
    )
    if completed.returncode != 0:
        raise BenchError(f"pgbench failed with status {completed.returncode}: {completed.stderr[-2000:]}")
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", completed.stdout)
    if match is None:
        raise BenchError(f"no tps line in the output of pgbench: {completed.stdout[-2000:]}")
    transactions = int(re.search(r"number of transactions actually processed: (\d+)", completed.stdout).group(1))
    return float(match.group(1)), transactions


def measure_pgbench_none(suite, run):
    with Database(suite, f"bench_pgbench_none_{run}", PGBENCH_TEMPLATE) as database:
        database.start_service()
        cpu = CPUGroups(suite, {"action-triggers": {database.service.process.pid}})
        cpu.start()
        tps, _transactions = run_pgbench(suite, database.name)
        usage = cpu.stop()
    return {"tps": tps, "cpu_percent": usage}


def measure_pgbench_bound(suite, run, consumer):
    config = webhook_config("bench", "account", suite.receiver_url)
    kind = BOUND_KINDS[consumer]
    with Database(suite, f"bench_pgbench_{kind}_{run}", PGBENCH_TEMPLATE, [config]) as database:
        with CaptureOnly(suite, database, consumer) as capture:
            cpu = CPUGroups(suite, capture.cpu_groups())
            cpu.start()
            tps, _transactions = run_pgbench(suite, database.name)
            usage = cpu.stop()
        # The share of these events that the consumer took during the run shows whether
        # it kept up. A consumer that falls behind does less work than the service does.
        events = database.connection.execute("SELECT count(*) FROM action_triggers.event").fetchone()[0]
        return {
            "tps": tps, "events": events, "events_consumed": capture.consumed, "webhooks_sent": capture.sent,
            "cpu_percent": usage,
        }


def measure_pgbench_config(suite, run):
    config = webhook_config("bench", "account", suite.receiver_url)
    with Database(suite, f"bench_pgbench_config_{run}", PGBENCH_TEMPLATE, [config]) as database:
        database.start_service()
        cpu = CPUGroups(suite, {"action-triggers": {database.service.process.pid}})
        cpu.start()
        tps, _transactions = run_pgbench(suite, database.name)
        ended = time.time()
        usage = cpu.stop()
        events = database.connection.execute("SELECT count(*) FROM action_triggers.event").fetchone()[0]
        delivered_by_end = sum(1 for receipt in receipt_times(suite) if receipt <= ended)
        wait_for_receipts(suite, events, key="requests", service=database.service)
        last_receipt = max(receipt_times(suite))
        held = database.service.held_dispatches()
        dispatches = dispatch_statements(suite, database.name)
    return {
        "tps": tps,
        "events": events,
        "dispatch_statements": dispatches,
        "delivered_during_run_fraction": delivered_by_end / events,
        "last_receipt_after_end_s": last_receipt - ended,
        **held,
        "cpu_percent": usage,
    }


class SteadyRun(bench.Run):
    """bench.py's Run on a copy of the plain template instead of its own schema."""

    def set_up(self):
        self.admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.database)))
        self.admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(self.database), sql.Identifier(PLAIN_TEMPLATE))
        )
        self.connection = psycopg.connect(self.url, autocommit=True, application_name=bench.LOADGEN_APPLICATION)
        config = webhook_config("myapp", "Customer", f"http://127.0.0.1:{self.options.receiver_port}/hook")
        self.connection.execute("SELECT action_triggers.create_config(%s::jsonb)", (json.dumps(config),))
        self.receiver.reset()
        self.start_service()
        self.warm_up()


def measure_steady(suite, run):
    with SteadyRun(suite.options, suite.admin, f"bench_steady_{run}") as steady:
        outcome = bench.run_steady(steady, STEADY_RATE, STEADY_SECONDS)
    return {key: outcome[key] for key in (
        "achieved_insert_per_sec", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_max_ms",
        "commit_to_dispatch_p50_ms", "dispatch_to_send_p50_ms", "send_to_receipt_p50_ms",
        "duplicates", "retried", "cpu_percent",
    )}


def drain_sales(suite, run, templated):
    payload = SALE_TEMPLATE if templated else None
    label = "rendered" if templated else "plain"
    config = webhook_config("myapp", "Sale", suite.receiver_url, payload)
    with Database(suite, f"bench_templates_{label}_{run}", PLAIN_TEMPLATE, [config]) as database:
        database.connection.execute(
            "INSERT INTO myapp_customer (name, email) "
            "SELECT 'customer ' || i, 'customer' || i || '@example.com' FROM generate_series(1, 100) AS i"
        )
        database.connection.execute(
            "INSERT INTO myapp_product (name, price) SELECT 'product ' || i, i * 1.5 FROM generate_series(1, 100) AS i"
        )
        database.connection.execute(
            "INSERT INTO myapp_sale (customer_id, product_id, quantity) "
            "SELECT 1 + i %% 100, 1 + (i / 100) %% 100, 1 + i %% 7 FROM generate_series(1, %s) AS i",
            (TEMPLATE_ROWS,),
        )
        database.connection.execute("VACUUM ANALYZE")
        database.start_service(wait_ready=False)
        cpu = CPUGroups(suite, {"action-triggers": {database.service.process.pid}})
        cpu.start()
        wait_for_receipts(suite, TEMPLATE_ROWS, service=database.service)
        usage = cpu.stop()
        times = receipt_times(suite)
    return {"drain_events_per_sec": TEMPLATE_ROWS / (max(times) - min(times)), "cpu_percent": usage}


def measure_templates_plain(suite, run):
    return drain_sales(suite, run, templated=False)


def measure_templates_rendered(suite, run):
    return drain_sales(suite, run, templated=True)


MEASUREMENTS = {
    "insert_pg": (lambda suite, run: measure_insert_pg(suite, run, client="loop"), {"plain"}),
    "insert_ours": (lambda suite, run: measure_insert_ours(suite, run, client="loop"), {"plain"}),
    "insert_capture": (lambda suite, run: measure_insert_bound(suite, run, consumer=None, client="loop"), {"plain"}),
    "insert_floor": (lambda suite, run: measure_insert_bound(suite, run, consumer="sql", client="loop"), {"plain"}),
    "insert_pg_pipelined": (lambda suite, run: measure_insert_pg(suite, run, client="pipeline"), {"plain"}),
    "insert_ours_pipelined": (lambda suite, run: measure_insert_ours(suite, run, client="pipeline"), {"plain"}),
    "insert_capture_pipelined":
        (lambda suite, run: measure_insert_bound(suite, run, consumer=None, client="pipeline"), {"plain"}),
    "insert_floor_pipelined":
        (lambda suite, run: measure_insert_bound(suite, run, consumer="sql", client="pipeline"), {"plain"}),
    "django_ours_none": (measure_django_ours_none, {"plain"}),
    "django_ours_config": (measure_django_ours_config, {"plain"}),
    "django_capture": (lambda suite, run: measure_django_bound(suite, run, consumer=None), {"plain"}),
    "django_floor": (lambda suite, run: measure_django_bound(suite, run, consumer="sql"), {"plain"}),
    "django_webhooks": (lambda suite, run: measure_django_bound(suite, run, consumer="webhooks"), {"plain"}),
    "django_ancestor_none": (measure_django_ancestor_none, {"ancestor"}),
    "django_ancestor_config": (measure_django_ancestor_config, {"ancestor"}),
    "drain": (measure_drain, {"plain"}),
    "idle": (measure_idle, {"plain"}),
    "pgbench_none": (measure_pgbench_none, {"pgbench"}),
    "pgbench_config": (measure_pgbench_config, {"pgbench"}),
    "pgbench_capture": (lambda suite, run: measure_pgbench_bound(suite, run, consumer=None), {"pgbench"}),
    "pgbench_floor": (lambda suite, run: measure_pgbench_bound(suite, run, consumer="sql"), {"pgbench"}),
    "pgbench_webhooks": (lambda suite, run: measure_pgbench_bound(suite, run, consumer="webhooks"), {"pgbench"}),
    "steady": (measure_steady, {"plain"}),
    "templates_plain": (measure_templates_plain, {"plain"}),
    "templates_rendered": (measure_templates_rendered, {"plain"}),
}


# ---------------------------------------------------------------------------
# Targets. Each names its measurements and computes, per run, the figures it
# prints; `check` names the figure compared with the target.


def median_of(results, measurement, key):
    return statistics.median(run[key] for run in results[measurement])


def per_run(results, function):
    runs = min(len(values) for values in results.values())
    return [function({name: values[index] for name, values in results.items()}) for index in range(runs)]


TARGETS = {
    "burst": {
        "measurements": [
            "insert_ours_pipelined", "django_ancestor_config", "insert_pg_pipelined", "insert_ours", "insert_pg",
            "django_ours_config", "insert_capture_pipelined", "insert_floor_pipelined", "insert_capture", "insert_floor",
        ],
        "rows": lambda r: {
            "events/s delivered, action-triggers (pipelined client)": r["insert_ours_pipelined"]["events_per_sec"],
            "events/s delivered, ancestor (Django save loop)": r["django_ancestor_config"]["events_per_sec"],
            "ratio action-triggers / ancestor":
                r["insert_ours_pipelined"]["events_per_sec"] / r["django_ancestor_config"]["events_per_sec"],
            "inserts/s, PostgreSQL alone (pipelined client, no trigger)": r["insert_pg_pipelined"]["inserts_per_sec"],
            "ratio action-triggers / PostgreSQL alone (pipelined client)":
                r["insert_ours_pipelined"]["events_per_sec"] / r["insert_pg_pipelined"]["inserts_per_sec"],
            "events/s delivered, action-triggers (psycopg loop)": r["insert_ours"]["events_per_sec"],
            "ratio action-triggers / ancestor, psycopg loop":
                r["insert_ours"]["events_per_sec"] / r["django_ancestor_config"]["events_per_sec"],
            "inserts/s, PostgreSQL alone (psycopg loop, no trigger)": r["insert_pg"]["inserts_per_sec"],
            "ratio action-triggers / PostgreSQL alone (psycopg loop)":
                r["insert_ours"]["events_per_sec"] / r["insert_pg"]["inserts_per_sec"],
            "events/s delivered, action-triggers (Django save loop)": r["django_ours_config"]["events_per_sec"],
            "ratio action-triggers / ancestor, both Django save loops":
                r["django_ours_config"]["events_per_sec"] / r["django_ancestor_config"]["events_per_sec"],
            "bound: inserts/s, capture trigger alone (pipelined client)": r["insert_capture_pipelined"]["inserts_per_sec"],
            "bound: ratio capture alone / ancestor (pipelined client)":
                r["insert_capture_pipelined"]["inserts_per_sec"] / r["django_ancestor_config"]["events_per_sec"],
            "bound: inserts/s, capture and minimal SQL consumer (pipelined client)":
                r["insert_floor_pipelined"]["inserts_per_sec"],
            "bound: ratio minimal SQL consumer / ancestor (pipelined client)":
                r["insert_floor_pipelined"]["inserts_per_sec"] / r["django_ancestor_config"]["events_per_sec"],
            "bound: inserts/s, capture trigger alone (psycopg loop)": r["insert_capture"]["inserts_per_sec"],
            "bound: ratio capture alone / ancestor (psycopg loop)":
                r["insert_capture"]["inserts_per_sec"] / r["django_ancestor_config"]["events_per_sec"],
            "bound: inserts/s, capture and minimal SQL consumer (psycopg loop)": r["insert_floor"]["inserts_per_sec"],
            "bound: ratio minimal SQL consumer / ancestor (psycopg loop)":
                r["insert_floor"]["inserts_per_sec"] / r["django_ancestor_config"]["events_per_sec"],
        },
        "check": ("ratio action-triggers / ancestor", ">=", 20),
    },
    "drain": {
        "measurements": ["drain"],
        "rows": lambda r: {
            "events/s drained from a backlog of 100,000": r["drain"]["drain_events_per_sec"],
            "service start to last receipt (s)": r["drain"]["start_to_last_receipt_s"],
        },
        "check": ("events/s drained from a backlog of 100,000", ">=", 5000),
    },
    "app-cost": {
        "measurements": [
            "django_ours_none", "django_ours_config", "django_ancestor_none", "django_ancestor_config",
            "django_capture", "django_floor", "django_webhooks",
        ],
        "rows": lambda r: {
            "saves/s, no config (plain Django, service running)": r["django_ours_none"]["saves_per_sec"],
            "saves/s, action-triggers config": r["django_ours_config"]["saves_per_sec"],
            "ratio action-triggers config / no config": r["django_ours_config"]["saves_per_sec"] / r["django_ours_none"]["saves_per_sec"],
            "saves/s, ancestor installed, no config": r["django_ancestor_none"]["saves_per_sec"],
            "saves/s, ancestor config": r["django_ancestor_config"]["saves_per_sec"],
            "ratio ancestor config / no config (plain Django)":
                r["django_ancestor_config"]["saves_per_sec"] / r["django_ours_none"]["saves_per_sec"],
            "ratio ancestor config / ancestor installed, no config":
                r["django_ancestor_config"]["saves_per_sec"] / r["django_ancestor_none"]["saves_per_sec"],
            "bound: saves/s, capture trigger alone": r["django_capture"]["saves_per_sec"],
            "bound: ratio capture alone / no config":
                r["django_capture"]["saves_per_sec"] / r["django_ours_none"]["saves_per_sec"],
            "bound: saves/s, capture and minimal SQL consumer": r["django_floor"]["saves_per_sec"],
            "bound: ratio minimal SQL consumer / no config":
                r["django_floor"]["saves_per_sec"] / r["django_ours_none"]["saves_per_sec"],
            "bound: saves/s, capture, minimal SQL consumer and webhook poster": r["django_webhooks"]["saves_per_sec"],
            "bound: ratio minimal consumer with webhooks / no config":
                r["django_webhooks"]["saves_per_sec"] / r["django_ours_none"]["saves_per_sec"],
        },
        "check": ("ratio action-triggers config / no config", ">=", 0.8),
    },
    "pgbench": {
        "measurements": ["pgbench_none", "pgbench_config", "pgbench_capture", "pgbench_floor", "pgbench_webhooks"],
        "rows": lambda r: {
            "TPS, no config": r["pgbench_none"]["tps"],
            "TPS, post_save config on pgbench_accounts": r["pgbench_config"]["tps"],
            "ratio config / none": r["pgbench_config"]["tps"] / r["pgbench_none"]["tps"],
            "webhooks received during the run (fraction)": r["pgbench_config"]["delivered_during_run_fraction"],
            "last webhook after pgbench ended (s)": r["pgbench_config"]["last_receipt_after_end_s"],
            "bound: TPS, capture trigger alone": r["pgbench_capture"]["tps"],
            "bound: ratio capture alone / none": r["pgbench_capture"]["tps"] / r["pgbench_none"]["tps"],
            "bound: TPS, capture and minimal SQL consumer": r["pgbench_floor"]["tps"],
            "bound: ratio minimal SQL consumer / none": r["pgbench_floor"]["tps"] / r["pgbench_none"]["tps"],
            "bound: TPS, capture, minimal SQL consumer and webhook poster": r["pgbench_webhooks"]["tps"],
            "bound: ratio minimal consumer with webhooks / none": r["pgbench_webhooks"]["tps"] / r["pgbench_none"]["tps"],
            "bound: events the minimal consumer with webhooks took during the run (fraction)":
                r["pgbench_webhooks"]["events_consumed"] / r["pgbench_webhooks"]["events"],
        },
        "check": ("ratio config / none", ">=", 0.75),
    },
    "latency": {
        "measurements": ["steady"],
        "rows": lambda r: {
            "commit to receipt p50 (ms)": r["steady"]["latency_p50_ms"],
            "commit to receipt p99 (ms)": r["steady"]["latency_p99_ms"],
            "commit to receipt max (ms)": r["steady"]["latency_max_ms"],
            "inserts/s achieved": r["steady"]["achieved_insert_per_sec"],
        },
        "check": [("commit to receipt p50 (ms)", "<=", 3), ("commit to receipt p99 (ms)", "<=", 10)],
    },
    "memory": {
        "measurements": ["idle", "drain"],
        "rows": lambda r: {
            "RSS idle (MB)": r["idle"]["rss_idle_mb"],
            "peak RSS while draining 100,000 events (MB)": r["drain"]["rss_peak_mb"],
        },
        "check": [("RSS idle (MB)", "<=", 50), ("peak RSS while draining 100,000 events (MB)", "<=", 150)],
    },
    "startup": {
        "measurements": ["idle"],
        "rows": lambda r: {"process start to /readyz 200 (s)": r["idle"]["start_to_ready_s"]},
        "check": ("process start to /readyz 200 (s)", "<=", 1),
    },
    "templates": {
        "measurements": ["templates_plain", "templates_rendered"],
        "rows": lambda r: {
            "events/s drained, Sale without template": r["templates_plain"]["drain_events_per_sec"],
            "events/s drained, Sale with payload template": r["templates_rendered"]["drain_events_per_sec"],
            "ratio templated / untemplated":
                r["templates_rendered"]["drain_events_per_sec"] / r["templates_plain"]["drain_events_per_sec"],
        },
        "check": ("ratio templated / untemplated", ">=", 0.7),
    },
}


def format_number(value):
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def report(target_names, results, loads):
    """Prints one table per target and returns True when every target is met."""
    all_met = True
    for name in target_names:
        target = TARGETS[name]
        rows = per_run({m: results[m] for m in target["measurements"]}, target["rows"])
        checks = target["check"] if isinstance(target["check"], list) else [target["check"]]
        print(f"\n## {name}\n")
        print("| figure | min / median / max | target | met |")
        print("| --- | --- | --- | --- |")
        for figure in rows[0]:
            values = [row[figure] for row in rows]
            spread = " / ".join(format_number(v) for v in (min(values), statistics.median(values), max(values)))
            target_text, met_text = "", ""
            for check_figure, operator, limit in checks:
                if check_figure == figure:
                    median = statistics.median(values)
                    met = median >= limit if operator == ">=" else median <= limit
                    all_met &= met
                    target_text = f"{operator} {limit:g}"
                    met_text = "met" if met else "**missed**"
            print(f"| {figure} | {spread} | {target_text} | {met_text} |")
    print(f"\nLoad averages (1, 5, 15 min) before each run: {'; '.join(loads)}")
    return all_met


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="+", choices=sorted(TARGETS) + ["all"], help="targets to measure")
    parser.add_argument("--binary", required=True, help="path of the action-triggers executable")
    parser.add_argument("--webhook-poster", required=True, help="path of the webhook poster built from bench/lib/webhook_poster.c")
    parser.add_argument("--django-python", required=True, help="Python of the venv with django-action-triggers 0.5.2")
    parser.add_argument("--pg-port", type=int, required=True, help="PostgreSQL port on 127.0.0.1")
    parser.add_argument("--postmaster-pid", type=int, required=True, help="PID of the PostgreSQL postmaster, for CPU accounting")
    parser.add_argument("--receiver-port", type=int, required=True, help="port of bench/receiver.py on 127.0.0.1")
    parser.add_argument("--receiver-pid", type=int, required=True, help="PID of bench/receiver.py, for CPU accounting")
    parser.add_argument("--work-dir", required=True, help="directory for the settings file, service logs and targets.json")
    parser.add_argument("--runs", type=int, default=3, help="runs of each measurement (default 3)")
    options = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))

    target_names = sorted(TARGETS) if "all" in options.targets else list(dict.fromkeys(options.targets))
    measurement_names = list(dict.fromkeys(m for name in target_names for m in TARGETS[name]["measurements"]))
    work_dir = Path(options.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "settings.json").write_text(json.dumps({"poll_interval_secs": 1, "max_webhook_timeout": 10}) + "\n")

    suite = Suite(options)
    suite.admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    results = {name: [] for name in measurement_names}
    loads = []
    try:
        suite.create_templates(set().union(*(MEASUREMENTS[m][1] for m in measurement_names)))
        for run in range(1, options.runs + 1):
            loads.append(" ".join(Path("/proc/loadavg").read_text().split()[:3]))
            for name in measurement_names:
                function, _templates = MEASUREMENTS[name]
                outcome = function(suite, run)
                outcome["load"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
                results[name].append(outcome)
                summary = ", ".join(
                    f"{key} {format_number(value)}" for key, value in outcome.items() if isinstance(value, (int, float))
                )
                print(f"run {run} {name}: {summary}; load {outcome['load']}", flush=True)
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        (work_dir / "targets.json").write_text(json.dumps(results, indent=2) + "\n")
        suite.drop_templates()
        suite.admin.close()

    met = report(target_names, results, loads)
    print(f"Per-run results: {work_dir / 'targets.json'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
