import Foundation
import KafkaClient
import RabbitMQClient
import Testing

/// The ancestor documentation's three API examples against the REST API.
@Suite("Spec examples through the API", .serialized)
struct SpecExampleTests {
    private func start() async throws -> (Harness, String) {
        let harness = try Harness()
        let settings = SpecExample.settings(redisPort: try TestEnvironment.redisPort())
        let service = try await harness.startService(settings: settings)
        return (harness, try await service.httpBaseURL() + "/api/action-triggers")
    }

    @Test("examples 2 and 3 as printed are 400 at the missing comma", arguments: [SpecExample.two, .three])
    func asPrinted(example: SpecExample) async throws {
        let (harness, api) = try await start()
        let position = try #require(example.missingCommaPosition)

        let reply = try await send("POST", api, body: example.asPrinted)

        #expect(reply.status == 400)
        #expect(reply.body == #"{"detail": "JSON parse error: line \#(position.line), column \#(position.column): unexpected '\"', expected ',' or '}' after an object member"}"#)
        #expect(try harness.database.query("SELECT count(*) AS n FROM action_triggers.config").singleRow().int("n") == 0)
    }

    @Test("each example round-trips through POST, GET, PUT, PATCH and DELETE", arguments: SpecExample.allCases)
    func roundTrip(example: SpecExample) async throws {
        let (harness, api) = try await start()
        // The harness owns the service; it must outlive the requests.
        defer { withExtendedLifetime(harness) {} }
        let posted = try #require(try JSONSerialization.jsonObject(with: Data(example.body.utf8)) as? [String: Any])

        let created = try await send("POST", api, body: example.body)
        #expect(created.status == 201, "\(created.body)")
        let stored = try #require(try created.json() as? [String: Any])
        let id = try #require(stored["id"] as? Int)
        expectSameConfig(stored, posted)
        let shown = try await send("GET", "\(api)/\(id)")
        #expect(shown.body == created.body)

        let replaced = try await send("PUT", "\(api)/\(id)", body: example.body)
        #expect(replaced.status == 200, "\(replaced.body)")
        #expect(replaced.body == created.body)

        let patched = try await send("PATCH", "\(api)/\(id)", body: #"{"active": false}"#)
        #expect(patched.status == 200, "\(patched.body)")
        var inactive = posted
        inactive["active"] = false
        expectSameConfig(try #require(try patched.json() as? [String: Any]), inactive)
        #expect(try await send("GET", "\(api)/\(id)").body == patched.body)

        #expect(try await send("DELETE", "\(api)/\(id)").status == 204)
        #expect(try await send("GET", "\(api)/\(id)").status == 404)
    }

    @Test("example 2 delivers both webhooks and both broker messages")
    func exampleTwoDelivers() async throws {
        let harness = try Harness()
        let rabbitPort = try TestEnvironment.rabbitMQPort()
        let queue = "products-\(UUID().uuidString.prefix(8))"
        let consumer = try RabbitMQConnection(
            host: "127.0.0.1", port: rabbitPort, virtualHost: "/", username: "guest", password: "guest", timeout: .seconds(10))
        try consumer.declareQueue(queue)
        let cluster = try KafkaMockCluster(brokers: 1)
        try cluster.createTopic("products", partitions: 1)
        let settings = Harness.settings(allowing: [harness.receiver], extra: """
            "dynamic_values": {
              "myapp.utils.get_token": {"env": "MYAPP_TOKEN"},
              "myapp.utils.get_product_id": {"env": "MYAPP_PRODUCT_ID"},
              "myapp.utils.get_sale_id": {"env": "MYAPP_SALE_ID"}
            },
            "brokers": {
              "my-msg-broker-config": {"broker_type": "rabbitmq", "conn_details": {"port": \(rabbitPort)}, "params": {"queue": "\(queue)"}},
              "my-other-msg-broker-config": {"broker_type": "kafka",
                "conn_details": {"bootstrap.servers": "\(cluster.bootstrapServers)"}, "params": {"topic": "products"}}
            }
            """)
        let service = try await harness.startService(
            settings: settings, environment: ["MYAPP_TOKEN": "token-42", "MYAPP_PRODUCT_ID": "p-7", "MYAPP_SALE_ID": "s-9"])
        let body = SpecExample.two.body
            .replacingOccurrences(of: "https://my-webhook.com", with: "\(harness.receiver.baseURL)/one")
            .replacingOccurrences(of: "https://my-other-webhook.com", with: "\(harness.receiver.baseURL)/two")
        #expect(try await send("POST", try await service.httpBaseURL() + "/api/action-triggers", body: body).status == 201)

        try harness.database.query("INSERT INTO myapp_product (name, description) VALUES ('lamp', 'O''Brien \"VIP\"')")
        let requests = try await harness.receiver.waitForRequests(count: 2, timeout: .seconds(20))
        try await harness.waitUntil("four deliveries succeed") {
            try harness.succeededDeliveries() == 4
        }

        let payload = try harness.database.query("SELECT new_row::text AS row FROM action_triggers.event").singleRow()
            .string("row")
        #expect(Set(requests.map(\.path)) == ["/one", "/two"])
        #expect(requests.allSatisfy { $0.bodyText == payload })
        #expect(requests.allSatisfy { $0.header("Authorization") == "Bearer token-42" })
        let message = try #require(try consumer.get(queue: queue))
        #expect(String(decoding: message.body, as: UTF8.self) == payload)
        #expect(message.properties["product_id"] == "p-7")
        let kafka = try KafkaConsumer(bootstrapServers: cluster.bootstrapServers, topic: "products", partitions: 1)
        var record: KafkaMessage?
        let deadline = ContinuousClock.now + .seconds(10)
        while record == nil, ContinuousClock.now < deadline {
            record = try kafka.next(timeout: .milliseconds(500))
        }
        #expect(record.map { String(decoding: $0.value, as: UTF8.self) } == payload)
        #expect(record?.headers["sale_id"] == "s-9")
    }

    /// Compares a stored config with the body it was made from; the stored form adds
    /// `id` and empty defaults (`headers`, `conn_details`, `parameters`, lists).
    private func expectSameConfig(_ stored: [String: Any], _ posted: [String: Any]) {
        for key in ["config_signals", "content_types", "active", "payload"] {
            // A config without a payload is stored with "payload": null.
            var expected = posted[key]
            if expected == nil && key == "payload" {
                expected = NSNull()
            }
            #expect(stored[key] as? NSObject == expected as? NSObject, "\(key): \(stored[key] ?? "missing")")
        }
        let storedWebhooks = stored["webhooks"] as? [[String: Any]] ?? []
        let postedWebhooks = posted["webhooks"] as? [[String: Any]] ?? []
        #expect(storedWebhooks.count == postedWebhooks.count)
        for (stored, posted) in zip(storedWebhooks, postedWebhooks) {
            #expect(stored as NSDictionary == posted as NSDictionary)
        }
        let storedQueues = stored["msg_broker_queues"] as? [[String: Any]] ?? []
        let postedQueues = posted["msg_broker_queues"] as? [[String: Any]] ?? []
        #expect(storedQueues.count == postedQueues.count)
        for (stored, posted) in zip(storedQueues, postedQueues) {
            var withoutDefaults = stored
            if (stored["conn_details"] as? NSDictionary)?.count == 0 && posted["conn_details"] == nil {
                withoutDefaults["conn_details"] = nil
            }
            #expect(withoutDefaults as NSDictionary == posted as NSDictionary)
        }
    }
}
