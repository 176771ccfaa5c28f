import Foundation
import PostgresClient
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The delivery log in SQL and the API: listing, one delivery, redelivery and retention.
@Suite("Delivery log and redelivery", .serialized)
struct DeliveryAPITests {
    /// Starts the service with two attempts per delivery, so a receiver that fails twice makes a dead delivery.
    private func start(_ harness: Harness, extra: String? = nil) async throws -> String {
        let service = try await harness.startService(
            settings: Harness.settings(allowing: [harness.receiver], maxAttempts: 2, extra: extra))
        return try await service.httpBaseURL() + "/api/action-triggers"
    }

    @Test("dead delivery redelivered through the API arrives")
    func redeliverDead() async throws {
        let harness = try Harness()
        let api = try await start(harness)
        let configID = try harness.createConfig(harness.exampleOneConfig())
        harness.receiver.enqueue(.init(status: 500, body: "down"))
        harness.receiver.enqueue(.init(status: 503, body: "down"))

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('Ada', 'ada@example.com')")
        try await harness.waitUntil("the delivery is dead") { try harness.onlyDeliveryStatus() == "dead" }
        let deliveryID = try harness.database.query("SELECT id FROM action_triggers.delivery").singleRow().string("id")

        let listed = try await send("GET", "\(api)/\(configID)/deliveries?status=dead")
        #expect(listed.status == 200, "\(listed.body)")
        let page = try #require(try listed.json() as? [String: Any])
        let results = try #require(page["results"] as? [[String: Any]])
        #expect(results.count == 1)
        #expect(results.first?["status"] as? String == "dead")
        #expect(results.first?["last_status_code"] as? Int == 503)
        #expect(results.first?["headers"] == nil)
        #expect(page["next"] is NSNull)

        let redelivered = try await send("POST", "\(api)/deliveries/\(deliveryID)/redeliver")
        #expect(redelivered.status == 202, "\(redelivered.body)")
        #expect(redelivered.body == #"{"redelivered": 1}"#)
        try await harness.waitUntil("the redelivery succeeds") { try harness.onlyDeliveryStatus() == "succeeded" }
        #expect(harness.requests(to: "/customer").count == 3)

        let shown = try await send("GET", "\(api)/deliveries/\(deliveryID)")
        let delivery = try #require(try shown.json() as? [String: Any])
        let attempts = try #require(delivery["attempt_log"] as? [[String: Any]])
        #expect(attempts.compactMap { $0["outcome"] as? String } == ["retry", "dead", "succeeded"])
        #expect(delivery["attempts"] as? Int == 3)

        let again = try await send("POST", "\(api)/deliveries/\(deliveryID)/redeliver")
        #expect(again.status == 202)
        try await harness.waitUntil("the second redelivery succeeds") { harness.requests(to: "/customer").count == 4 }
    }

    @Test("bulk redelivery takes a config's failed and dead deliveries")
    func bulkRedelivery() async throws {
        let harness = try Harness()
        let api = try await start(harness)
        let configID = try harness.createConfig(harness.exampleOneConfig())
        harness.receiver.defaultResponse = .init(status: 404, body: "gone")

        for index in 1...3 {
            try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ($1, 'x@example.com')", ["c\(index)"])
        }
        try await harness.waitUntil("three deliveries fail") {
            try harness.database.query(
                "SELECT count(*) AS n FROM action_triggers.delivery WHERE status = 'failed'").singleRow().int("n") == 3
        }
        let firstPage = try #require(try await send("GET", "\(api)/\(configID)/deliveries?limit=2").json() as? [String: Any])
        #expect((firstPage["results"] as? [[String: Any]])?.count == 2)
        let next = try #require(firstPage["next"] as? String)
        let base = try #require(api.range(of: "/api/action-triggers")).lowerBound
        let secondPage = try #require(try await send("GET", String(api[..<base]) + next).json() as? [String: Any])
        #expect((secondPage["results"] as? [[String: Any]])?.count == 1)
        #expect(secondPage["next"] is NSNull, "\(secondPage)")
        // A last page that is exactly full has no next page either.
        let fullPage = try #require(try await send("GET", "\(api)/\(configID)/deliveries?limit=3").json() as? [String: Any])
        #expect((fullPage["results"] as? [[String: Any]])?.count == 3)
        #expect(fullPage["next"] is NSNull, "\(fullPage)")

        harness.receiver.defaultResponse = .init(status: 200, body: "ok")
        let reply = try await send("POST", "\(api)/\(configID)/deliveries/redeliver", body: #"{"statuses": ["failed"]}"#)
        #expect(reply.status == 200, "\(reply.body)")
        #expect(reply.body == #"{"redelivered": 3}"#)
        try await harness.waitUntil("all three succeed") {
            try harness.succeededDeliveries() == 3
        }
    }

    @Test("SQL bulk redelivery rejects unknown configs and statuses")
    func sqlBulkRedeliveryChecks() throws {
        let harness = try Harness()
        _ = try MigrationHelper.migrate(try harness.database.connect())
        let configID = try harness.createConfig(harness.exampleOneConfig())
        let cases: [(String, [String], String, String)] = [
            ("SELECT action_triggers.redeliver_config(999999)", [], "P0002", "config 999999 not found"),
            ("SELECT action_triggers.redeliver_config($1, ARRAY['bogus', 'failed'])", [String(configID)], "22023",
             "statuses must be a non-empty list of succeeded, failed, dead (got 'bogus')"),
            ("SELECT action_triggers.redeliver_config($1, ARRAY[]::text[])", [String(configID)], "22023",
             "statuses must be a non-empty list of succeeded, failed, dead (got none)"),
        ]

        for (statement, parameters, sqlState, message) in cases {
            do {
                try harness.database.query(statement, parameters)
                Issue.record("\(statement) succeeded")
            } catch let error as PostgresError {
                #expect(error.sqlState == sqlState, "\(statement)")
                #expect(error.message == message, "\(statement)")
            }
        }
        let valid = try harness.database.query("SELECT action_triggers.redeliver_config($1) AS n", [String(configID)])
        #expect(try valid.singleRow().int("n") == 0)
    }

    @Test("redelivery of a pending delivery is 409")
    func redeliverPending() async throws {
        let harness = try Harness()
        let api = try await start(harness)
        try harness.createConfig(harness.exampleOneConfig())
        harness.receiver.defaultResponse = .init(status: 200, body: "slow", delay: .seconds(3))
        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('Ada', 'ada@example.com')")
        try await harness.waitUntil("the delivery is in flight") { try harness.onlyDeliveryStatus() == "in_flight" }
        let deliveryID = try harness.database.query("SELECT id FROM action_triggers.delivery").singleRow().string("id")

        let reply = try await send("POST", "\(api)/deliveries/\(deliveryID)/redeliver")

        #expect(reply.status == 409)
        #expect(reply.body.contains("is in_flight; only succeeded, failed or dead deliveries can be redelivered"))
    }

    @Test("invalid queries are 400 and unknown ids 404", arguments: [
        ("/1/deliveries?status=lost", 400, "status"),
        ("/1/deliveries?limit=0", 400, "limit"),
        ("/1/deliveries?limit=abc", 400, "limit"),
        ("/1/deliveries?since=yesterday-ish", 400, "since"),
        ("/1/deliveries?before=-3", 400, "before"),
        ("/1/deliveries?sort=id", 400, "sort"),
        ("/999/deliveries", 404, "detail"),
        ("/deliveries/999", 404, "detail"),
        ("/deliveries/abc", 404, "detail"),
    ])
    func invalidQueries(path: String, status: Int, key: String) async throws {
        let harness = try Harness()
        let api = try await start(harness)
        try harness.createConfig(harness.exampleOneConfig())

        let reply = try await send("GET", api + path)

        #expect(reply.status == status, "\(reply.body)")
        #expect((try reply.json() as? [String: Any])?[key] != nil, "\(reply.body)")
    }

    @Test("SIGTERM releases deliveries still in flight after the grace period")
    func shutdownReleases() async throws {
        let harness = try Harness()
        let settings = Harness.settings(allowing: [harness.receiver], extra: #""shutdown_grace_secs": 1"#)
        let service = try await harness.startService(settings: settings)
        try harness.createConfig(harness.exampleOneConfig())
        harness.receiver.enqueue(.init(status: 200, body: "slow", delay: .seconds(8)))
        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('Ada', 'ada@example.com')")
        try await harness.waitUntil("the delivery is in flight") { try harness.onlyDeliveryStatus() == "in_flight" }
        // A delivery claimed at dispatch is in flight before the worker takes it. A stop
        // in that moment releases it through the dispatcher, with another log line, so
        // the test waits until the request has reached the receiver.
        _ = try await harness.receiver.waitForRequests(count: 1, timeout: .seconds(10))

        let stopping = ContinuousClock.now
        service.stop(signal: SIGTERM)

        #expect(ContinuousClock.now - stopping < .seconds(6))
        #expect(service.terminationStatus == 0)
        #expect(service.log.contains("released deliveries still in flight at shutdown"))
        let row = try harness.database.query(
            "SELECT status, next_attempt_at <= now() AS due FROM action_triggers.delivery").singleRow()
        #expect(row["status"] == "pending")
        #expect(row["due"] == "t")

        // Another instance takes it over at once, not after the lease.
        try await harness.startService(settings: settings)
        try await harness.waitUntil("the delivery succeeds", timeout: .seconds(15)) { try harness.onlyDeliveryStatus() == "succeeded" }
    }

    @Test("old events are deleted after retention_days")
    func retention() async throws {
        let harness = try Harness()
        // 0.001 days is 86.4 s; the event is aged by hand instead of waiting.
        _ = try await start(harness, extra: #""retention_days": 0.001"#)
        try harness.createConfig(harness.exampleOneConfig())
        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('old', 'o@example.com')")
        try await harness.waitUntil("the delivery succeeds") { try harness.onlyDeliveryStatus() == "succeeded" }

        try harness.database.query("UPDATE action_triggers.event SET dispatched_at = now() - interval '1 day'")
        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('new', 'n@example.com')")
        try await harness.waitUntil("the old event is deleted") {
            try harness.database.query("SELECT count(*) AS n FROM action_triggers.event").singleRow().int("n") == 1
        }

        let remaining = try harness.database.query(
            "SELECT new_row ->> 'name' AS name FROM action_triggers.event").singleRow()
        #expect(remaining["name"] == "new")
        #expect(try harness.database.query("SELECT count(*) AS n FROM action_triggers.delivery").singleRow().int("n") == 1)
        #expect(try harness.database.query("SELECT count(*) AS n FROM action_triggers.delivery_attempt").singleRow().int("n") == 1)
    }
}
