import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import PostgresClient
import Testing

/// Held dispatches: the dispatcher keeps its transaction open while the first attempts
/// of the webhook deliveries it claims run, then writes each delivery once, with its
/// outcome.
@Suite("Held dispatch", .serialized)
struct HeldDispatchTests {
    /// Returns settings that hold every dispatch, so that single events take the held path.
    private func holdingAlways(_ harness: Harness) -> String {
        Harness.settings(allowing: [harness.receiver], extra: #""dispatch_hold": "always""#)
    }

    /// A condition on delivery `d`: true when the transaction that dispatched its event
    /// wrote it, and nothing changed it since.
    private static let writtenOnce = """
        d.xmin::text = (SELECT e.xmin::text FROM action_triggers.event e WHERE e.id = d.event_id)
        """

    /// Returns the only delivery's columns that tell how it was written.
    private func onlyDelivery(_ harness: Harness) throws -> PostgresRow {
        try harness.database.query("""
            SELECT status, attempts, last_status_code, \(Self.writtenOnce) AS written_once,
                   completed_at IS NOT NULL AS completed
            FROM action_triggers.delivery d
            """).singleRow()
    }

    @Test("fast receiver gets a delivery written once")
    func fastDeliveryWrittenOnce() async throws {
        let harness = try Harness()
        try await harness.startService(settings: holdingAlways(harness))
        try harness.createConfig(harness.exampleOneConfig())

        // A hold lasts at most 20 ms. On a loaded machine the receiver's response can
        // miss that, and the dispatch then writes the delivery twice by design, so
        // the checks below apply to the first delivery whose hold settled.
        var rows = 0
        var settled = false
        while !settled && rows < 3 {
            rows += 1
            let settledBefore = try await heldDispatches(harness)["settled"] ?? 0
            try harness.database.query(
                "INSERT INTO myapp_customer (name, email) VALUES ($1, 'h@example.com')", ["held \(rows)"])
            try await harness.waitUntil("the delivery succeeds") {
                try harness.succeededDeliveries() == rows
            }
            settled = try await heldDispatches(harness)["settled"] ?? 0 > settledBefore
        }
        #expect(settled, "none of \(rows) holds settled within 20 ms")

        let delivery = try harness.database.query("""
            SELECT d.id, attempts, last_status_code, \(Self.writtenOnce) AS written_once,
                   completed_at IS NOT NULL AS completed
            FROM action_triggers.delivery d ORDER BY d.id DESC LIMIT 1
            """).singleRow()
        let id = try delivery.string("id")
        #expect(try delivery.int("attempts") == 1)
        #expect(try delivery.int("last_status_code") == 200)
        #expect(try delivery.bool("completed"))
        // Inserted with its outcome in the dispatch's transaction, never updated.
        #expect(try delivery.bool("written_once"))
        let times = try harness.database.query("""
            SELECT d.completed_at >= a.started_at + make_interval(secs => a.duration_ms / 1000) AS completed_after_attempt,
                   d.created_at <= a.started_at AS created_before_attempt
            FROM action_triggers.delivery d JOIN action_triggers.delivery_attempt a ON a.delivery_id = d.id
            WHERE d.id = $1
            """, [id]).singleRow()
        #expect(try times.bool("completed_after_attempt"))
        #expect(try times.bool("created_before_attempt"))
        let attempts = try harness.database.query(
            "SELECT attempt, status_code, outcome FROM action_triggers.delivery_attempt WHERE delivery_id = $1", [id])
        #expect(attempts.rows.map { $0["outcome"] } == ["succeeded"])
        #expect(attempts.rows.map { $0["status_code"] } == ["200"])
        #expect(harness.receiver.requests.count == rows)
    }

    @Test("failed first attempt is written due for a retry")
    func failedAttemptWrittenPending() async throws {
        let harness = try Harness()
        try await harness.startService(settings: holdingAlways(harness))
        try harness.createConfig(harness.exampleOneConfig())
        harness.receiver.enqueue(.init(status: 500, body: "down"))

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('retry', 'r@example.com')")
        let requests = try await harness.receiver.waitForRequests(count: 2, timeout: .seconds(20))
        #expect(requests[0].header("webhook-id") == requests[1].header("webhook-id"))
        try await harness.waitUntil("the delivery succeeds") {
            try harness.onlyDeliveryStatus() == "succeeded"
        }

        let delivery = try onlyDelivery(harness)
        #expect(try delivery.int("attempts") == 2)
        #expect(try !delivery.bool("written_once"))
        let attempts = try harness.database.query(
            "SELECT status_code, outcome FROM action_triggers.delivery_attempt ORDER BY attempt")
        #expect(attempts.rows.map { $0["status_code"] } == ["500", "200"])
        #expect(attempts.rows.map { $0["outcome"] } == ["retry", "succeeded"])
    }

    @Test("slow receiver falls back to a delivery in flight")
    func slowReceiverInFlight() async throws {
        let harness = try Harness()
        try await harness.startService(settings: holdingAlways(harness))
        try harness.createConfig(harness.exampleOneConfig())
        harness.receiver.enqueue(.init(status: 200, body: "slow", delay: .seconds(3)))

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('slow', 's@example.com')")
        // The dispatch stops waiting after 20 ms and commits the delivery in flight, so
        // it shows while the receiver still waits. The slow response takes 3 s, so the
        // check still finds it in flight when the parallel tests stall this process.
        try await harness.waitUntil("the delivery shows in flight", timeout: .milliseconds(2500)) {
            try harness.onlyDeliveryStatus() == "in_flight"
        }
        #expect(harness.receiver.requests.count == 1)

        // Holding pauses for a second after a hold that ran out of time, so the next
        // delivery is written in flight and then updated, although its receipt is fast.
        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('next', 'n@example.com')")
        try await harness.waitUntil("both deliveries succeed") {
            try harness.succeededDeliveries() == 2
        }
        let deliveries = try harness.database.query("""
            SELECT attempts, last_status_code, \(Self.writtenOnce) AS written_once
            FROM action_triggers.delivery d ORDER BY id
            """).rows
        #expect(deliveries.map { $0["attempts"] } == ["1", "1"])
        #expect(deliveries.map { $0["last_status_code"] } == ["200", "200"])
        #expect(deliveries.map { $0["written_once"] } == ["f", "f"])
        let attempts = try harness.database.query("SELECT outcome FROM action_triggers.delivery_attempt")
        #expect(attempts.rows.map { $0["outcome"] } == ["succeeded", "succeeded"])
        #expect(harness.receiver.requests.count == 2)
    }

    @Test("rolled-back hold sends again with the same webhook-id")
    func rolledBackHoldSendsAgain() async throws {
        let harness = try Harness()
        try await harness.startService(settings: holdingAlways(harness))
        // The first delivery inserted with its outcome fails once; the sequence is not
        // rolled back with the transaction that draws from it.
        try harness.database.execute("""
            CREATE SEQUENCE held_fault;
            CREATE FUNCTION fail_first_held_insert() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.status = 'succeeded' AND nextval('held_fault') = 1 THEN
                    RAISE EXCEPTION 'injected fault';
                END IF;
                RETURN NEW;
            END
            $$;
            CREATE TRIGGER fail_first_held_insert BEFORE INSERT ON action_triggers.delivery
                FOR EACH ROW EXECUTE FUNCTION fail_first_held_insert();
            """)
        try harness.createConfig(harness.exampleOneConfig())

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('again', 'a@example.com')")
        let requests = try await harness.receiver.waitForRequests(count: 2, timeout: .seconds(20))
        try await harness.waitUntil("the delivery succeeds") {
            try harness.onlyDeliveryStatus() == "succeeded"
        }

        #expect(requests[0].header("webhook-id") == requests[1].header("webhook-id"))
        #expect(requests[0].bodyText == requests[1].bodyText)
        let delivery = try onlyDelivery(harness)
        #expect(try delivery.int("attempts") == 1)
        // The second dispatch came during the pause after the failure, so it wrote the
        // delivery in flight and then its outcome.
        #expect(try !delivery.bool("written_once"))
        let events = try harness.database.query(
            "SELECT count(*) AS events, count(dispatched_at) AS dispatched FROM action_triggers.event").singleRow()
        #expect(try events.int("events") == 1)
        #expect(try events.int("dispatched") == 1)
        #expect(harness.service?.log.contains("held dispatch rolled back") == true)
        #expect(harness.receiver.requests.count == 2)
    }

    @Test("batch beyond free slots is held in parts")
    func batchHeldInParts() async throws {
        let harness = try Harness()
        let settings = Harness.settings(
            allowing: [harness.receiver], extra: #""dispatch_hold": "always", "delivery_concurrency": 4"#)
        try await harness.startService(settings: settings)
        try harness.createConfig(harness.exampleOneConfig())

        // One transaction of 20 rows: a held dispatch takes no more events than the 4
        // free slots, so no delivery is created pending beyond them.
        try harness.database.query("""
            INSERT INTO myapp_customer (name, email)
            SELECT 'part ' || n, 'part@example.com' FROM generate_series(1, 20) AS n
            """)
        try await harness.waitUntil("every delivery succeeds") {
            try harness.succeededDeliveries() == 20
        }

        let written = try harness.database.query("""
            SELECT count(*) FILTER (WHERE \(Self.writtenOnce)) AS once, count(DISTINCT d.xmin::text) AS dispatches,
                   max(d.attempts) AS max_attempts
            FROM action_triggers.delivery d
            """).singleRow()
        // Deliveries written once were written by the hold that dispatched them, so each
        // group of one transaction is one hold.
        let largestHold = try harness.database.query("""
            SELECT coalesce(max(n), 0) AS n FROM (
                SELECT count(*) AS n FROM action_triggers.delivery d WHERE \(Self.writtenOnce) GROUP BY d.xmin::text
            ) AS holds
            """).singleRow().int("n")
        #expect(largestHold <= 4)
        #expect(try written.int("max_attempts") == 1)
        #expect(harness.receiver.requests.count == 20)
        let holdsByOutcome = try await heldDispatches(harness)
        #expect(holdsByOutcome["rolled_back"] == 0)
        // A hold that times out on a busy machine leaves its deliveries in flight, to be
        // written again, and keeps their slots, so the next dispatch may not hold. When
        // every hold settles, the 20 events go in 5 holds of 4.
        if holdsByOutcome["timed_out"] == 0 {
            #expect(try written.int("once") == 20)
            #expect(try written.int("dispatches") == 5)
            #expect(holdsByOutcome["settled"] == 5)
        }
        // The start line shows the settings that shape holds.
        #expect(harness.service?.log.contains("dispatch.hold=always delivery.concurrency=4") == true)
    }

    /// Returns the service's held dispatches by outcome, from /metrics.
    private func heldDispatches(_ harness: Harness) async throws -> [String: Int] {
        let service = try #require(harness.service)
        let url = try #require(URL(string: try await service.httpBaseURL() + "/metrics"))
        let (data, _) = try await URLSession.shared.data(from: url)
        var counts: [String: Int] = [:]
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n")
        where line.hasPrefix("action_triggers_held_dispatches_total{") {
            let parts = line.split(separator: " ")
            let outcome = parts[0].split(separator: "\"")[1]
            counts[String(outcome)] = Int(parts[1])
        }
        return counts
    }

    @Test("idle polls count no hold")
    func idlePollsCountNoHold() async throws {
        let harness = try Harness()
        let settings = Harness.settings(
            allowing: [harness.receiver], pollInterval: 0.1, extra: #""dispatch_hold": "always""#)
        try await harness.startService(settings: settings)
        try harness.createConfig(harness.exampleOneConfig())

        // About ten polls find nothing to dispatch.
        try await Task.sleep(for: .seconds(1))
        #expect(try await heldDispatches(harness) == ["settled": 0, "timed_out": 0, "rolled_back": 0])

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('counted', 'c@example.com')")
        try await harness.waitUntil("the delivery succeeds") {
            try harness.onlyDeliveryStatus() == "succeeded"
        }
        try await Task.sleep(for: .milliseconds(500))
        let counts = try await heldDispatches(harness)
        #expect((counts["settled"] ?? 0) + (counts["timed_out"] ?? 0) == 1)
        #expect(counts["rolled_back"] == 0)
    }

    @Test("default setting holds only under a stream")
    func defaultHoldsStreams() async throws {
        let harness = try Harness()
        // A dispatch holds only while a quarter of the delivery slots are free. With the
        // default 64, the stream's first deliveries could fill them on a busy machine
        // until the stream ended, so no dispatch held.
        try await harness.startService(
            settings: Harness.settings(allowing: [harness.receiver], extra: #""delivery_concurrency": 1000"#))
        try harness.createConfig(harness.exampleOneConfig())

        // A single event is dispatched as it comes, without a hold.
        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('single', 's@example.com')")
        try await harness.waitUntil("the delivery succeeds") {
            try harness.onlyDeliveryStatus() == "succeeded"
        }
        #expect(try !onlyDelivery(harness).bool("written_once"))
        #expect(try await heldDispatches(harness) == ["settled": 0, "timed_out": 0, "rolled_back": 0])

        // A transaction of 10 rows every millisecond or so, for about 200 ms, makes a
        // dense stream: its polls find 8 events or more, so the wait between them grows
        // and dispatches hold. Whether a hold settles depends on how fast the receiver
        // is on a busy machine, so the test counts holds of either kind.
        let connection = try harness.database.connect()
        defer { connection.close() }
        for batch in 1...150 {
            try connection.query("""
                INSERT INTO myapp_customer (name, email)
                SELECT 'stream ' || $1 || '.' || n, 'stream@example.com' FROM generate_series(1, 10) AS n
                """, [String(batch)])
            try await Task.sleep(for: .milliseconds(1))
        }
        try await harness.waitUntil("every delivery succeeds") {
            try harness.succeededDeliveries() == 1501
        }
        let held = try await heldDispatches(harness)
        #expect((held["settled"] ?? 0) + (held["timed_out"] ?? 0) > 0, "\(held)")
        #expect(held["rolled_back"] == 0)
        let counts = try harness.database.query("""
            SELECT count(*) FILTER (WHERE \(Self.writtenOnce)) AS written_once, count(*) AS deliveries
            FROM action_triggers.delivery d
            """).singleRow()
        if (held["settled"] ?? 0) > 0 {
            #expect(try counts.int("written_once") > 0)
        }
        #expect(try counts.int("deliveries") == 1501)
        #expect(harness.receiver.requests.count == 1501)
    }
}
