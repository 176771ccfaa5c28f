"""Break things on purpose under a steady stream of inserts and check that no committed row is lost.

Run by bench/faults, which builds the service, starts a throwaway PostgreSQL cluster
and passes its data directory and port. Each scenario gets a fresh database, a fresh
service (two in the scale-out scenario) and this script's own webhook receiver:

  1. CREATE DATABASE, `action-triggers migrate`, the table myapp_customer and one
     config (post_save on myapp.Customer, one POST webhook to the receiver).
  2. `action-triggers serve`, then a wait until /readyz returns 200.
  3. A load generator inserts rows at a steady rate, each in its own transaction, and
     rolls back every tenth transaction on purpose. It records on the side every row
     whose COMMIT returned, every row it rolled back, and every row whose COMMIT failed
     with an unknown outcome (in doubt).
  4. The fault, while the inserts go on.
  5. The inserts stop, and the script waits until every row in the table has arrived
     with a 2xx response, then GRACE_SECONDS more for late duplicates.
  6. The check: every row in the table delivered at least once, no rolled-back row
     and no other unknown row delivered, every row whose COMMIT returned present in
     the table, no dead delivery. Duplicates are counted and reported, not failed,
     because delivery is at least once.

The receiver records a request when its whole body has been read, before it responds.
A service killed after sending a request but before reading the response therefore
leaves a received request that the next attempt repeats, which is a duplicate.

Exits 1 when a scenario loses a row, delivers an unknown or rolled-back row, or
cannot run; the results table is printed either way.
"""

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
from psycopg import sql

GRACE_SECONDS = 2.0
DRAIN_TIMEOUT_SECONDS = 240
READY_TIMEOUT_SECONDS = 30
STOP_TIMEOUT_SECONDS = 15
INSERT_RATE = 100
ROLLBACK_EVERY = 10
LOADGEN_APPLICATION = "faults-loadgen"
LISTENER_APPLICATION = "action-triggers/listener"

# Every value except these two is the service's default. max_webhook_timeout sets the
# lease of a claimed delivery (max_webhook_timeout + 60 s), which is how long work
# claimed by a killed instance waits before another instance takes it over.
SERVICE_SETTINGS = {"poll_interval_secs": 1, "max_webhook_timeout": 5}

# With the default retry schedule (5 s doubling), a row that meets a 500 six times in
# a row waits about 5 minutes for its seventh attempt. The receiver-500 scenario
# retries faster so the run stays short. It tests that every row arrives, not the schedule.
FAST_RETRY_SETTINGS = {**SERVICE_SETTINGS, "retry": {"base_delay_secs": 0.5, "max_delay_secs": 5}}


class FaultError(Exception):
    """A scenario that could not be run to its end."""


def log(message):
    print(f"    {message}", flush=True)


# ---------------------------------------------------------------------------
# Receiver


class WebhookHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.server.receiver.track(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.receiver.untrack(self.connection)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if len(body) < length:
            # The sender went away mid-body, as a killed service does, so this is no request.
            self.close_connection = True
            return
        status, delay = self.server.receiver.record(body, self.headers.get("webhook-id"))
        if delay:
            time.sleep(delay)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args):
        pass


class ReceiverServer(ThreadingHTTPServer):
    # socketserver's default listen backlog of 5 drops connection attempts when a
    # restarted service opens its pool of connections at once.
    request_queue_size = 256
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A killed service resets its connections, which is expected here.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class Receiver:
    """A webhook receiver that can go down, respond 500 to every Nth request, or respond slowly.

    It records (receipt time, row id, webhook-id header, status) for every request, where
    the row id is the "id" field of the JSON body. Going down closes the listening socket and every open
    connection, so the service gets refused and reset connections until it comes back.
    """

    def __init__(self, port):
        self.port = port
        self.lock = threading.Lock()
        self.records = []
        self.request_count = 0
        self.fail_every = 0
        self.delay = 0.0
        self.connections = set()
        self.server = None
        self.thread = None

    def up(self):
        server = ReceiverServer(("127.0.0.1", self.port), WebhookHandler)
        server.receiver = self
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, name="receiver", daemon=True)
        self.thread.start()

    def down(self):
        if self.server is None:
            return
        self.server.shutdown()
        self.server.server_close()
        self.server = None
        with self.lock:
            connections = list(self.connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def track(self, connection):
        with self.lock:
            self.connections.add(connection)

    def untrack(self, connection):
        with self.lock:
            self.connections.discard(connection)

    def record(self, body, message_id):
        """Records one request and returns (status, delay) for its response."""
        row_id = None
        try:
            document = json.loads(body)
            if isinstance(document, dict) and isinstance(document.get("id"), int):
                row_id = document["id"]
        except ValueError:
            pass
        with self.lock:
            self.request_count += 1
            status = 500 if self.fail_every and self.request_count % self.fail_every == 0 else 200
            self.records.append((time.time(), row_id, message_id, status))
            return status, self.delay

    def reset(self):
        with self.lock:
            self.records = []
            self.request_count = 0
            self.fail_every = 0
            self.delay = 0.0

    def snapshot(self):
        with self.lock:
            return list(self.records)

    def delivered_ids(self):
        with self.lock:
            return {row_id for _, row_id, _, status in self.records if status == 200}


# ---------------------------------------------------------------------------
# Service processes


class Service:
    """One `action-triggers serve` process with its own HTTP port and log file."""

    def __init__(self, options, url, settings_path, http_port, log_path):
        self.options = options
        self.url = url
        self.settings_path = settings_path
        self.http_port = http_port
        self.log_path = log_path
        self.process = None
        self.killed = False
        self.pid_path = Path(options.work_dir) / f"service-{http_port}.pid"

    def environment(self):
        environment = dict(os.environ)
        environment.update({
            "DATABASE_URL": self.url,
            "ACTION_TRIGGERS_SETTINGS": str(self.settings_path),
            "ACTION_TRIGGERS_LISTEN": f"127.0.0.1:{self.http_port}",
            "ACTION_TRIGGERS_LOG_LEVEL": "info",
        })
        return environment

    def start(self):
        self.killed = False
        with open(self.log_path, "a") as log_file:
            self.process = subprocess.Popen(
                [self.options.binary, "serve"], env=self.environment(),
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
            )
        # bench/faults ends every PID named in these files if this script dies first.
        self.pid_path.write_text(f"{self.process.pid}\n")
        self.wait_ready()

    def wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise FaultError(f"action-triggers exited with status {self.process.returncode}; see {self.log_path}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=1)
                connection.request("GET", "/readyz")
                if connection.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise FaultError(f"action-triggers was not ready within {READY_TIMEOUT_SECONDS} s; see {self.log_path}")

    def kill(self):
        self.killed = True
        self.process.kill()
        self.process.wait()
        self.pid_path.unlink(missing_ok=True)

    def stop(self):
        if self.process is None or self.process.poll() is not None:
            self.pid_path.unlink(missing_ok=True)
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise FaultError(f"action-triggers did not stop within {STOP_TIMEOUT_SECONDS} s of SIGTERM")
        finally:
            self.pid_path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------
# Load generator


class LoadGenerator(threading.Thread):
    """Inserts rows at a steady rate, each in its own transaction, and records their fate.

    A failed statement or connection is not retried: the row is simply not committed,
    and the generator reconnects and goes on with the next row.
    """

    def __init__(self, url, rate):
        super().__init__(name="load", daemon=True)
        self.url = url
        self.interval = 1.0 / rate
        self.stopping = threading.Event()
        self.committed = {}
        self.rolled_back = set()
        self.in_doubt = set()
        self.errors = 0
        self.last_error = None

    def run(self):
        connection = None
        number = 0
        next_start = time.monotonic()
        while not self.stopping.is_set():
            delay = next_start - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            next_start = max(next_start + self.interval, time.monotonic())
            number += 1
            try:
                if connection is None:
                    connection = psycopg.connect(self.url, application_name=LOADGEN_APPLICATION, connect_timeout=2)
                self.insert(connection, number)
            except psycopg.Error as error:
                self.errors += 1
                self.last_error = str(error).strip()
                if connection is not None:
                    connection.close()
                connection = None
                time.sleep(0.1)
        if connection is not None:
            connection.close()

    def insert(self, connection, number):
        row_id = connection.execute(
            "INSERT INTO myapp_customer (name, email) VALUES (%s, %s) RETURNING id",
            (f"customer {number}", f"customer{number}@example.com"),
        ).fetchone()[0]
        if number % ROLLBACK_EVERY == 0:
            connection.rollback()
            self.rolled_back.add(row_id)
            return
        try:
            connection.commit()
        except psycopg.Error:
            # The COMMIT may or may not have reached the server, so a query of the table decides later.
            self.in_doubt.add(row_id)
            raise
        self.committed[row_id] = time.time()

    def stop(self):
        self.stopping.set()
        self.join()


# ---------------------------------------------------------------------------
# Scenarios


class Run:
    """One scenario: its database, receiver, services, load generator and result."""

    def __init__(self, options, receiver, name):
        self.options = options
        self.receiver = receiver
        self.name = name
        self.database = f"faults_{name.replace('-', '_')}"
        self.url = f"postgresql://postgres@127.0.0.1:{options.pg_port}/{self.database}"
        self.admin_url = f"postgresql://postgres@127.0.0.1:{options.pg_port}/postgres"
        self.settings = SERVICE_SETTINGS
        self.services = []
        self.load = None
        self.started_at = None
        self.notes = []

    def set_up(self):
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.database)))
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        migrate = subprocess.run(
            [self.options.binary, "migrate"], env={**os.environ, "DATABASE_URL": self.url},
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        )
        if migrate.returncode != 0:
            raise FaultError(f"action-triggers migrate failed with status {migrate.returncode}: {migrate.stderr.strip()}")
        config = {
            "config_signals": [{"signal": "post_save"}],
            "content_types": [{"app_label": "myapp", "model_name": "Customer"}],
            "webhooks": [{"url": f"http://127.0.0.1:{self.options.receiver_port}/hook", "http_method": "POST"}],
            "active": True,
        }
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(
                "CREATE TABLE myapp_customer (id bigserial PRIMARY KEY, name text NOT NULL, email varchar(254) NOT NULL)"
            )
            connection.execute("SELECT action_triggers.create_config(%s::jsonb)", (json.dumps(config),))
        self.receiver.reset()

    def start_service(self, index=0):
        port = self.options.service_port + index
        work_dir = Path(self.options.work_dir)
        settings_path = work_dir / f"{self.name}-settings.json"
        settings_path.write_text(json.dumps(self.settings) + "\n")
        service = Service(self.options, self.url, settings_path, port, work_dir / f"{self.name}-service-{index}.log")
        service.start()
        self.services.append(service)
        return service

    def start_load(self):
        self.load = LoadGenerator(self.url, INSERT_RATE)
        self.started_at = time.monotonic()
        self.load.start()

    def at(self, seconds):
        """Sleeps until `seconds` after the load started."""
        delay = self.started_at + seconds - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def finish(self):
        """Stops the load, waits for the backlog to drain and returns the result row."""
        self.load.stop()
        load_seconds = time.monotonic() - self.started_at
        with psycopg.connect(self.url, autocommit=True) as connection:
            table_ids = {row[0] for row in connection.execute("SELECT id FROM myapp_customer")}

        # Drained means every row arrived and no delivery is left pending or in flight, so
        # the deliveries that a killed instance had claimed are counted once they are retried.
        drain_started = time.monotonic()
        with psycopg.connect(self.url, autocommit=True) as connection:
            while True:
                unfinished = connection.execute(
                    "SELECT count(*) FROM action_triggers.delivery WHERE status IN ('pending', 'in_flight')"
                ).fetchone()[0]
                if unfinished == 0 and table_ids <= self.receiver.delivered_ids():
                    break
                if time.monotonic() - drain_started > DRAIN_TIMEOUT_SECONDS:
                    self.notes.append(f"{unfinished} deliveries unfinished after {DRAIN_TIMEOUT_SECONDS} s")
                    break
                for service in self.services:
                    if service.process.poll() is not None and not service.killed:
                        raise FaultError(f"action-triggers exited with status {service.process.returncode}; see {service.log_path}")
                time.sleep(0.1)
            drain_seconds = time.monotonic() - drain_started
            time.sleep(GRACE_SECONDS)

            dead = connection.execute("SELECT count(*) FROM action_triggers.delivery WHERE status = 'dead'").fetchone()[0]
            attempts = connection.execute("SELECT count(*) FROM action_triggers.delivery_attempt").fetchone()[0]
            result = self.result(table_ids, load_seconds, drain_seconds, dead, attempts)
            if result["unknown_ids"]:
                # Shows where an unknown row came from: its events in the outbox, if any.
                events = connection.execute(
                    "SELECT (new_row ->> 'id')::bigint, count(*) FROM action_triggers.event "
                    "WHERE (new_row ->> 'id')::bigint = ANY(%s) GROUP BY 1",
                    (result["unknown_ids"],),
                ).fetchall()
                self.notes.append(f"events in the outbox for unknown ids: {dict(events)}")
        for service in self.services:
            service.stop()
        return result

    def result(self, table_ids, load_seconds, drain_seconds, dead, attempts):
        records = self.receiver.snapshot()
        first_success = {}
        successes = 0
        failures = 0
        received_ids = set()
        message_ids = {}
        for receipt_time, row_id, message_id, status in records:
            received_ids.add(row_id)
            message_ids.setdefault(row_id, set()).add(message_id)
            if status != 200:
                failures += 1
                continue
            successes += 1
            first_success.setdefault(row_id, receipt_time)
        unknown_ids = sorted(received_ids - table_ids - self.load.rolled_back, key=str)

        committed = self.load.committed
        waits = sorted(first_success[row_id] - commit_time for row_id, commit_time in committed.items() if row_id in first_success)
        return {
            "scenario": self.name,
            "load_seconds": round(load_seconds, 1),
            "committed": len(table_ids),
            "commit_returned": len(committed),
            "commit_returned_missing_from_table": len(set(committed) - table_ids),
            "rolled_back": len(self.load.rolled_back),
            "in_doubt": len(self.load.in_doubt),
            "in_doubt_committed": len(self.load.in_doubt & table_ids),
            "insert_errors": self.load.errors,
            "delivered": len(table_ids & set(first_success)),
            "missing": len(table_ids - set(first_success)),
            "rolled_back_delivered": len(self.load.rolled_back & received_ids),
            "unknown_delivered": len(unknown_ids),
            "unknown_ids": unknown_ids[:10],
            "duplicates": successes - len(first_success),
            "rows_with_several_message_ids": sum(1 for ids in message_ids.values() if len(ids) > 1),
            "non_2xx_answers": failures,
            "dead": dead,
            "attempts": attempts,
            "drain_seconds": round(drain_seconds, 1),
            "median_wait_ms": round(statistics.median(waits) * 1000, 1) if waits else None,
            "max_wait_seconds": round(waits[-1], 1) if waits else None,
            "slowest_rows": [
                [row_id, round(first_success[row_id] - commit_time, 1)]
                for row_id, commit_time in sorted(
                    ((row_id, commit_time) for row_id, commit_time in committed.items() if row_id in first_success),
                    key=lambda item: item[1] - first_success[item[0]],
                )[:5]
            ],
            "notes": "; ".join(self.notes),
        }

    def tear_down(self):
        if self.load is not None and self.load.is_alive():
            self.load.stop()
        for service in self.services:
            try:
                if service.process is not None and service.process.poll() is None:
                    service.process.kill()
                    service.process.wait()
            finally:
                service.pid_path.unlink(missing_ok=True)
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.database)))


def scenario_sigkill(run):
    """SIGKILL the service five times, 4 s apart, and start it again 0.5 s after each kill."""
    # A receiver that responds after 50 ms keeps a few requests in flight, so every kill
    # leaves claimed deliveries behind for the restarted service to take over.
    run.receiver.delay = 0.05
    service = run.start_service()
    run.start_load()
    for kill_number in range(5):
        run.at(3 + 4 * kill_number)
        service.kill()
        time.sleep(0.5)
        service.start()
    run.at(23)
    run.notes.append("5 kills")


def scenario_pg_restart(run):
    """Restart PostgreSQL with `pg_ctl restart -m fast` 4 s into the stream."""
    run.start_service()
    run.start_load()
    run.at(4)
    restart = subprocess.run(
        ["bash", "-c", 'source scripts/lib/postgres.sh && pg_restart "$1"', "pg_restart", run.options.pg_data],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
    )
    if restart.returncode != 0:
        raise FaultError(f"pg_restart failed with status {restart.returncode}: {restart.stderr.strip()}")
    run.at(14)


def scenario_listener_terminated(run):
    """Terminate the listener's connection with pg_terminate_backend, twice."""
    run.start_service()
    run.start_load()
    terminated = 0
    with psycopg.connect(run.url, autocommit=True) as connection:
        for moment in (3, 7):
            run.at(moment)
            terminated += connection.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = %s",
                (LISTENER_APPLICATION,),
            ).fetchone()[0]
    if terminated < 2:
        raise FaultError(f"expected to terminate 2 listener connections, terminated {terminated}")
    run.notes.append(f"{terminated} listener connections terminated")
    run.at(11)


def scenario_receiver_down(run):
    """Take the receiver down for 30 s, 3 s into the stream."""
    run.start_service()
    run.start_load()
    run.at(3)
    run.receiver.down()
    run.at(33)
    run.receiver.up()
    run.at(36)
    run.notes.append("receiver down 30 s")


def scenario_two_instances(run):
    """Run two instances against a receiver that responds after 0.2 s, and SIGKILL one 5 s in."""
    run.receiver.delay = 0.2
    first = run.start_service(0)
    run.start_service(1)
    run.start_load()
    run.at(5)
    first.kill()
    run.at(15)
    run.notes.append("instance 1 of 2 killed; its claimed deliveries wait out the lease")


def scenario_receiver_500(run):
    """Respond with 500 to every third request for the whole stream."""
    run.receiver.fail_every = 3
    run.settings = FAST_RETRY_SETTINGS
    run.start_service()
    run.start_load()
    run.at(15)
    run.notes.append("500 to every third request")


SCENARIOS = {
    "sigkill": scenario_sigkill,
    "pg-restart": scenario_pg_restart,
    "listener-terminated": scenario_listener_terminated,
    "receiver-down": scenario_receiver_down,
    "two-instances": scenario_two_instances,
    "receiver-500": scenario_receiver_500,
}

COLUMNS = [
    ("scenario", "scenario"),
    ("committed", "committed"),
    ("rolled_back", "rolled back"),
    ("in_doubt", "in doubt"),
    ("insert_errors", "failed inserts"),
    ("delivered", "delivered"),
    ("missing", "missing"),
    ("rolled_back_delivered", "rolled back delivered"),
    ("duplicates", "duplicates"),
    ("non_2xx_answers", "non-2xx"),
    ("dead", "dead"),
    ("max_wait_seconds", "longest wait (s)"),
]


def failures_of(result):
    """Returns the broken promises of one scenario's result, as sentences."""
    problems = []
    if result["missing"]:
        problems.append(f"{result['missing']} committed rows were not delivered")
    if result["rolled_back_delivered"]:
        problems.append(f"{result['rolled_back_delivered']} rolled-back rows were delivered")
    if result["unknown_delivered"]:
        problems.append(
            f"{result['unknown_delivered']} requests carried a row id that is not in the table "
            f"(first ids: {result['unknown_ids']}; {result['notes']})"
        )
    if result["rows_with_several_message_ids"]:
        problems.append(f"{result['rows_with_several_message_ids']} rows arrived under more than one webhook-id")
    if result["commit_returned_missing_from_table"]:
        problems.append(f"{result['commit_returned_missing_from_table']} rows whose COMMIT returned are missing from the table")
    if result["dead"]:
        problems.append(f"{result['dead']} deliveries are dead")
    return problems


def print_table(results):
    print()
    print("| " + " | ".join(title for _, title in COLUMNS) + " |")
    print("|" + "|".join("---" for _ in COLUMNS) + "|")
    for result in results:
        print("| " + " | ".join(str(result.get(key, "")) for key, _ in COLUMNS) + " |")
    print()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True, help="path of the action-triggers executable")
    parser.add_argument("--pg-port", type=int, required=True, help="port of the PostgreSQL cluster on 127.0.0.1")
    parser.add_argument("--pg-data", required=True, help="data directory of that cluster, for the restart scenario")
    parser.add_argument("--receiver-port", type=int, required=True, help="port for the webhook receiver on 127.0.0.1")
    parser.add_argument("--service-port", type=int, required=True, help="first HTTP port for service instances on 127.0.0.1")
    parser.add_argument("--work-dir", required=True, help="directory for the settings files, service logs and results.json")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, help="run only this scenario (repeatable)")
    options = parser.parse_args()

    work_dir = Path(options.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)

    receiver = Receiver(options.receiver_port)
    receiver.up()
    results = []
    failed = False
    for name in options.scenario or list(SCENARIOS):
        print(f"==> {name}: {SCENARIOS[name].__doc__}", flush=True)
        run = Run(options, receiver, name)
        try:
            run.set_up()
            SCENARIOS[name](run)
            result = run.finish()
        except FaultError as error:
            print(f"error: {name}: {error}", file=sys.stderr, flush=True)
            failed = True
            continue
        finally:
            if receiver.server is None:
                receiver.up()
            run.tear_down()
        results.append(result)
        problems = failures_of(result)
        summary = (
            f"{result['committed']} committed, {result['delivered']} delivered, {result['duplicates']} duplicates, "
            f"{result['in_doubt']} in doubt, {result['insert_errors']} insert errors, drained in {result['drain_seconds']} s"
        )
        log(summary)
        for problem in problems:
            print(f"error: {name}: {problem}", file=sys.stderr, flush=True)
            failed = True

    receiver.down()
    (work_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
