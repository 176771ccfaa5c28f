import Foundation
import PostgresClient
import RedisClient
import Testing

/// Deliveries to a real Redis server started by `scripts/test`.
@Suite("Redis broker", .serialized)
struct RedisBrokerTests {
    /// Returns a name no other test run uses, for channels and streams.
    private static func uniqueName(_ prefix: String) -> String {
        "\(prefix)-\(UUID().uuidString.prefix(8))"
    }

    private func settings(_ harness: Harness, brokers: String, extra: String? = nil) -> String {
        Harness.settings(
            allowing: [harness.receiver], extra: #""brokers": \#(brokers)"# + (extra.map { ",\n" + $0 } ?? ""))
    }

    private func customerConfig(queues: String) -> String {
        """
        {
          "config_signals": [{"signal": "post_save"}],
          "content_types": [{"app_label": "myapp", "model_name": "Customer"}],
          "msg_broker_queues": \(queues),
          "active": true
        }
        """
    }

    @Test("stream entry carries payload, metadata and attributes")
    func streamEntry() async throws {
        let port = try TestEnvironment.redisPort()
        let stream = Self.uniqueName("customers")
        let harness = try Harness()
        let service = try await harness.startService(
            settings: settings(
                harness,
                brokers: #"{"events": {"broker_type": "redis", "conn_details": {"host": "127.0.0.1", "port": \#(port)}, "params": {"stream": "\#(stream)", "maxlen": 1000}}}"#,
                extra: #""dynamic_values": {"tenant.id": {"env": "TENANT_ID"}}"#),
            environment: ["TENANT_ID": "tenant-7"])
        try harness.createConfig(
            customerConfig(queues: #"[{"name": "events", "parameters": {"tenant": "{{ tenant.id }}", "product_id": 1234}}]"#))

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('Ada', 'ada@example.com')")
        try await harness.waitUntil("the delivery succeeds") { try harness.onlyDeliveryStatus() == "succeeded" }

        let redis = try RedisConnection(host: "127.0.0.1", port: port, timeout: .seconds(5))
        guard case .array(let entries) = try redis.command("XRANGE", stream, "-", "+"), entries.count == 1,
              case .array(let entry) = entries[0], entry.count == 2, case .array(let fieldList) = entry[1] else {
            Issue.record("expected one stream entry")
            return
        }
        var fields: [String: String] = [:]
        for index in stride(from: 0, to: fieldList.count - 1, by: 2) {
            fields[fieldList[index].text ?? ""] = fieldList[index + 1].text
        }
        let eventID = try harness.database.query("SELECT id FROM action_triggers.event").singleRow().string("id")
        let queueID = try harness.database.query("SELECT id FROM action_triggers.msg_broker_queue").singleRow().string("id")
        #expect(fields["payload"] == #"{"id": 1, "name": "Ada", "email": "ada@example.com"}"#)
        #expect(fields["message_id"] == "msg_\(eventID)_q\(queueID)")
        #expect(fields["event_id"] == eventID)
        #expect(fields["signal"] == "post_save")
        #expect(fields["model"] == "myapp.customer")
        #expect(fields["tenant"] == "tenant-7")
        #expect(fields["product_id"] == "1234")
        let metrics = try await send("GET", try await service.httpBaseURL() + "/metrics").body
        #expect(metrics.contains(#"action_triggers_delivery_attempts_total{target="redis",outcome="succeeded"} 1"#))
    }

    @Test("channel message reaches a subscriber")
    func channelSubscriber() async throws {
        let port = try TestEnvironment.redisPort()
        let channel = Self.uniqueName("sales")
        let subscriber = try RedisConnection(host: "127.0.0.1", port: port, timeout: .seconds(20))
        guard case .array = try subscriber.command("SUBSCRIBE", channel) else {
            Issue.record("SUBSCRIBE failed")
            return
        }
        let harness = try Harness()
        try await harness.startService(settings: settings(
            harness, brokers: #"{"bus": {"broker_type": "redis", "conn_details": {"port": "\#(port)"}}}"#))
        try harness.createConfig(customerConfig(queues: #"[{"name": "bus", "parameters": {"channel": "\#(channel)"}}]"#))

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('O''Brien \"VIP\"', 'o@example.com')")
        let message = try subscriber.readReply()

        guard case .array(let parts) = message, parts.count == 3 else {
            Issue.record("expected a message, got \(message)")
            return
        }
        #expect(parts[0].text == "message")
        #expect(parts[1].text == channel)
        #expect(parts[2].text == #"{"id": 1, "name": "O'Brien \"VIP\"", "email": "o@example.com"}"#)
    }

    @Test("channel without subscribers is counted")
    func channelWithoutSubscribers() async throws {
        let port = try TestEnvironment.redisPort()
        let harness = try Harness()
        let service = try await harness.startService(settings: settings(
            harness,
            brokers: #"{"bus": {"broker_type": "redis", "conn_details": {"port": \#(port)}, "params": {"channel": "\#(Self.uniqueName("nobody"))"}}}"#))
        try harness.createConfig(customerConfig(queues: #"[{"name": "bus"}]"#))

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('Ada', 'ada@example.com')")
        try await harness.waitUntil("the delivery succeeds") { try harness.onlyDeliveryStatus() == "succeeded" }

        let metrics = try await send("GET", try await service.httpBaseURL() + "/metrics").body
        #expect(metrics.contains("action_triggers_redis_publish_no_subscribers_total 1"))
        #expect(service.log.contains("Redis channel had no subscribers"))
    }

    @Test("unreachable Redis is retried")
    func unreachableRetried() async throws {
        let stream = Self.uniqueName("later")
        let harness = try Harness()
        // A loopback port with no server: take one from the kernel, then close it.
        let receiver = try TestReceiver()
        let closedPort = receiver.port
        receiver.stop()
        try await harness.startService(settings: settings(
            harness,
            brokers: #"{"down": {"broker_type": "redis", "conn_details": {"port": \#(closedPort)}, "params": {"stream": "\#(stream)"}}}"#))
        try harness.createConfig(customerConfig(queues: #"[{"name": "down"}]"#))

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('Ada', 'ada@example.com')")
        try await harness.waitUntil("the first attempt fails") {
            try harness.database.query("SELECT count(*) AS n FROM action_triggers.delivery_attempt").singleRow().int("n") >= 1
        }

        let attempt = try harness.database.query(
            "SELECT outcome, error FROM action_triggers.delivery_attempt ORDER BY attempt LIMIT 1").singleRow()
        #expect(attempt["outcome"] == "retry")
        #expect(attempt["error"]?.contains("publish failed: connecting to Redis at 127.0.0.1:\(closedPort) failed") == true,
                "\(attempt["error"] ?? "")")
    }

    @Test("queue settings are checked against the broker", arguments: [
        (#"[{"name": "events", "parameters": {"stream": "other"}}]"#, "msg_broker_queues[0].parameters.stream",
         "is set by broker events in the settings file, so a config cannot override it"),
        (#"[{"name": "events", "conn_details": {"hostname": "x"}}]"#, "msg_broker_queues[0].conn_details.hostname",
         "is not a redis connection setting; known: host, port, db, username, password"),
        (#"[{"name": "bare"}]"#, "msg_broker_queues[0].parameters.channel",
         "broker bare needs a channel (PUBLISH) or a stream (XADD), in its params or here"),
        (#"[{"name": "bare", "parameters": {"channel": "a", "stream": "b"}}]"#, "msg_broker_queues[0].parameters.stream",
         "give either channel (PUBLISH) or stream (XADD), not both"),
        (#"[{"name": "bare", "parameters": {"channel": "a", "product_id": "7"}}]"#, "msg_broker_queues[0].parameters",
         "a Redis channel message has no fields to carry product_id; publish to a stream to send attributes"),
        (#"[{"name": "bare", "parameters": {"stream": "a", "maxlen": "0"}}]"#, "msg_broker_queues[0].parameters.maxlen",
         "must be a positive integer"),
        (#"[{"name": "missing"}]"#, "msg_broker_queues[0].name", #"no broker named "missing" in brokers of the settings file"#),
        (#"[{"name": "events", "parameters": {"key": "{{ not.listed }}"}}]"#, "msg_broker_queues[0].parameters.key",
         "dynamic value not.listed is not in dynamic_values of the settings file; add it there to allow it"),
    ])
    func queueValidation(queues: String, path: String, message: String) async throws {
        let harness = try Harness()
        let service = try await harness.startService(settings: settings(
            harness,
            brokers: #"{"events": {"broker_type": "redis", "params": {"stream": "s"}}, "bare": {"broker_type": "redis"}}"#))
        let api = try await service.httpBaseURL() + "/api/action-triggers"

        let reply = try await send("POST", api, body: customerConfig(queues: queues))

        #expect(reply.status == 400)
        let errors = try #require(try reply.json() as? [String: [String]], "\(reply.body)")
        #expect(errors[path] == [message], "\(reply.body)")
        #expect(try harness.database.query("SELECT count(*) AS n FROM action_triggers.config").singleRow().int("n") == 0)
    }
}
