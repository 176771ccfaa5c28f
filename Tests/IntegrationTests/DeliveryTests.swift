import Foundation
import PostgresClient
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The main job end to end: committed row changes of the Django tables become webhooks.
@Suite("Delivery end to end", .serialized)
struct DeliveryTests {
    @Test("example 1 delivers insert, update and delete")
    func exampleOne() async throws {
        let harness = try Harness()
        try await harness.startService()
        let configID = try harness.createConfig(harness.exampleOneConfig())

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('Ada', 'ada@example.com')")
        try harness.database.query("UPDATE myapp_customer SET name = 'Ada Lovelace'")
        try harness.database.query("DELETE FROM myapp_customer")
        // Deliveries run in parallel, so order the requests by the event id in webhook-id.
        let requests = try await harness.receiver.waitForRequests(count: 3, timeout: .seconds(20))
            .sorted { eventID(of: $0) < eventID(of: $1) }

        #expect(requests.map(\.method) == ["POST", "POST", "POST"])
        #expect(requests.map(\.path) == ["/customer", "/customer", "/customer"])
        let names = try requests.map { try jsonObject($0)["name"] as? String }
        #expect(names == ["Ada", "Ada Lovelace", "Ada Lovelace"])
        for request in requests {
            let body = try jsonObject(request)
            #expect(body["email"] as? String == "ada@example.com")
            #expect(body["id"] as? Int == 1)
            #expect(request.header("Content-Type") == "application/json")
            #expect(request.header("Authorization") == "Bearer test-token")
            #expect(request.header("webhook-timestamp").flatMap(Int.init) != nil)
        }

        // Each request's webhook-id names its event, whose signal the outbox recorded.
        let signals = try requests.map { request -> String in
            try harness.database.query("SELECT signal FROM action_triggers.event WHERE id = $1", [String(eventID(of: request))])
                .singleRow().string("signal")
        }
        #expect(signals == ["post_save", "post_save", "post_delete"])
        #expect(Set(requests.compactMap { $0.header("webhook-id") }).count == 3)

        let statuses = try harness.database.query(
            "SELECT status FROM action_triggers.delivery WHERE config_id = $1 ORDER BY id", [String(configID)])
        #expect(statuses.rows.map { $0["status"] } == ["succeeded", "succeeded", "succeeded"])
    }

    @Test("two updates in one transaction are two deliveries")
    func twoUpdatesOneTransaction() async throws {
        let harness = try Harness()
        try await harness.startService()
        try harness.createConfig(harness.exampleOneConfig())
        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('first', 'x@example.com')")
        _ = try await harness.receiver.waitForRequests(count: 1, timeout: .seconds(20))

        let connection = try harness.database.connect()
        try connection.transaction { connection in
            try connection.query("UPDATE myapp_customer SET name = 'second'")
            try connection.query("UPDATE myapp_customer SET name = 'second'")
        }
        let requests = try await harness.receiver.waitForRequests(count: 3, timeout: .seconds(20))
            .sorted { eventID(of: $0) < eventID(of: $1) }

        #expect(requests.count == 3)
        #expect(try requests.map { try jsonObject($0)["name"] as? String } == ["first", "second", "second"])
        #expect(Set(requests.compactMap { $0.header("webhook-id") }).count == 3)
    }

    @Test("rolled-back insert is never delivered")
    func rollbackNotDelivered() async throws {
        let harness = try Harness()
        try await harness.startService()
        try harness.createConfig(harness.exampleOneConfig())
        try harness.createConfig(harness.markerConfig())

        let connection = try harness.database.connect()
        try connection.execute("BEGIN")
        try connection.query("INSERT INTO myapp_customer (name, email) VALUES ('rolled back', 'r@example.com')")
        try connection.execute("ROLLBACK")
        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('committed', 'c@example.com')")
        _ = try await harness.receiver.waitForRequests(count: 1, timeout: .seconds(20))
        try await harness.insertMarkerAndWait(count: 1)

        let customerBodies = harness.requests(to: "/customer").map(\.bodyText)
        #expect(customerBodies.count == 1)
        #expect(customerBodies.allSatisfy { !$0.contains("rolled back") })
        let captured = try harness.database.query(
            "SELECT count(*) AS n FROM action_triggers.event WHERE new_row ->> 'name' = 'rolled back'")
        #expect(try captured.singleRow().int("n") == 0)
    }

    @Test("9000-character name is delivered whole")
    func longRow() async throws {
        let harness = try Harness()
        try await harness.startService()
        try harness.createConfig(harness.exampleOneConfig())
        let name = String(repeating: "n", count: 8990) + "ü'\"\\\n ends"
        #expect(name.count == 9000)

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ($1, 'long@example.com')", [name])
        let requests = try await harness.receiver.waitForRequests(count: 1, timeout: .seconds(20))

        let body = try jsonObject(requests[0])
        #expect((body["name"] as? String)?.count == 9000)
        #expect(body["name"] as? String == name)
    }

    @Test("bigint and numeric arrive exactly")
    func exactNumbers() async throws {
        let harness = try Harness()
        try await harness.startService()
        try harness.createConfig("""
            {"config_signals": [{"signal": "post_save"}],
             "content_types": [{"app_label": "myapp", "model_name": "Measurement"}],
             "webhooks": [{"url": "\(harness.receiver.baseURL)/measurement", "http_method": "PUT"}],
             "active": true}
            """)

        try harness.database.query(
            "INSERT INTO myapp_measurement (big, amount) VALUES (50755254975729665, 12345678901234567890.0123456789)")
        let requests = try await harness.receiver.waitForRequests(count: 1, timeout: .seconds(20))

        #expect(requests[0].method == "PUT")
        #expect(requests[0].bodyText.contains(#""big": 50755254975729665"#))
        #expect(requests[0].bodyText.contains(#""amount": 12345678901234567890.0123456789"#))
    }

    @Test("row image ignores session settings")
    func sessionSettingsIgnored() async throws {
        let harness = try Harness()
        try harness.database.query(
            "CREATE TABLE myapp_reading (id bigserial PRIMARY KEY, taken_at timestamptz, ratio float8, raw bytea)")
        try await harness.startService()
        try harness.createConfig("""
            {"config_signals": [{"signal": "post_save"}],
             "content_types": [{"app_label": "myapp", "model_name": "Reading"}],
             "webhooks": [{"url": "\(harness.receiver.baseURL)/reading", "http_method": "POST"}],
             "active": true}
            """)

        let connection = try harness.database.connect()
        try connection.execute("SET TimeZone = 'Asia/Tokyo'; SET extra_float_digits = -3; SET bytea_output = 'escape'")
        try connection.query("""
            INSERT INTO myapp_reading (taken_at, ratio, raw)
            VALUES ('2026-12-04 12:00:00+00', 0.1::float8 + 0.2::float8, '\\x00ff'::bytea)
            """)
        let requests = try await harness.receiver.waitForRequests(count: 1, timeout: .seconds(20))

        let body = requests[0].bodyText
        #expect(body.contains(#""taken_at": "2026-12-04T12:00:00+00:00""#), "body: \(body)")
        #expect(body.contains(#""ratio": 0.30000000000000004"#), "body: \(body)")
        #expect(body.contains(#""raw": "\\x00ff""#), "body: \(body)")
    }

    @Test("pre_save and pre_delete send NEW and OLD")
    func preSignals() async throws {
        let harness = try Harness()
        try await harness.startService()
        try harness.createConfig("""
            {"config_signals": [{"signal": "pre_save"}, {"signal": "pre_delete"}],
             "content_types": [{"app_label": "myapp", "model_name": "customer"}],
             "webhooks": [{"url": "\(harness.receiver.baseURL)/pre", "http_method": "POST"}],
             "active": true}
            """)

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('before', 'p@example.com')")
        try harness.database.query("DELETE FROM myapp_customer")
        let requests = try await harness.receiver.waitForRequests(count: 2, timeout: .seconds(20))
            .sorted { eventID(of: $0) < eventID(of: $1) }

        #expect(try requests.map { try jsonObject($0)["name"] as? String } == ["before", "before"])
        let remaining = try harness.database.query("SELECT count(*) AS n FROM myapp_customer").singleRow().int("n")
        #expect(remaining == 0)
    }

    @Test("partitioned table reports its parent")
    func partitionedTable() async throws {
        let harness = try Harness()
        try harness.database.query("""
            CREATE TABLE myapp_reading (id bigint NOT NULL, taken_on date NOT NULL, value text) PARTITION BY RANGE (taken_on)
            """)
        try harness.database.query(
            "CREATE TABLE myapp_reading_2026 PARTITION OF myapp_reading FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')")
        try await harness.startService()
        try harness.createConfig("""
            {"config_signals": [{"signal": "post_save"}],
             "content_types": [{"app_label": "myapp", "model_name": "Reading"}],
             "webhooks": [{"url": "\(harness.receiver.baseURL)/reading", "http_method": "POST"}],
             "active": true}
            """)

        try harness.database.query("INSERT INTO myapp_reading VALUES (7, '2026-12-04', 'seven')")
        let requests = try await harness.receiver.waitForRequests(count: 1, timeout: .seconds(20))

        #expect(try jsonObject(requests[0])["value"] as? String == "seven")
        // The event names the partition written; the dispatcher matched it to the parent's model.
        let table = try harness.database.query("SELECT table_oid::regclass::text AS t FROM action_triggers.event").singleRow()
        #expect(table["t"] == "myapp_reading_2026")
    }
}
