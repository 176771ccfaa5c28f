import Foundation
import KafkaClient
import PostgresClient
import Testing

/// Deliveries to librdkafka's mock cluster, a Kafka-protocol broker on loopback in the test process.
@Suite("Kafka broker", .serialized)
struct KafkaBrokerTests {
    private func customerConfig(queue: String) -> String {
        """
        {
          "config_signals": [{"signal": "post_save"}],
          "content_types": [{"app_label": "myapp", "model_name": "Customer"}],
          "msg_broker_queues": [\(queue)],
          "active": true
        }
        """
    }

    private func settings(_ harness: Harness, connDetails: String, params: String, maxBrokerTimeout: Double = 10) -> String {
        Harness.settings(allowing: [harness.receiver], extra: """
            "max_broker_timeout": \(maxBrokerTimeout),
            "brokers": {"kafka": {"broker_type": "kafka", "conn_details": \(connDetails), "params": \(params)}}
            """)
    }

    @Test("one row's events share a key and a partition, in order")
    func keyedMessages() async throws {
        let cluster = try KafkaMockCluster(brokers: 3)
        try cluster.createTopic("customers", partitions: 4)
        let harness = try Harness()
        let service = try await harness.startService(settings: settings(
            harness, connDetails: #"{"bootstrap.servers": "\#(cluster.bootstrapServers)"}"#, params: #"{"topic": "customers"}"#))
        try harness.createConfig(customerConfig(queue: #"{"name": "kafka", "parameters": {"source": "crm"}}"#))

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('v1', 'a@example.com')")
        try harness.database.query("UPDATE myapp_customer SET name = 'v2'")
        try harness.database.query("UPDATE myapp_customer SET name = 'v3'")
        try await harness.waitUntil("three deliveries succeed") {
            try harness.succeededDeliveries() == 3
        }

        let consumer = try KafkaConsumer(bootstrapServers: cluster.bootstrapServers, topic: "customers", partitions: 4)
        var messages: [KafkaMessage] = []
        let deadline = ContinuousClock.now + .seconds(20)
        while messages.count < 3, ContinuousClock.now < deadline {
            if let message = try consumer.next(timeout: .milliseconds(500)) {
                messages.append(message)
            }
        }
        #expect(messages.count == 3)
        #expect(Set(messages.map { String(decoding: $0.key, as: UTF8.self) }) == ["myapp.customer:1"])
        #expect(Set(messages.map(\.partition)).count == 1)
        let names = messages.map { String(decoding: $0.value, as: UTF8.self) }
        #expect(names == ["v1", "v2", "v3"].map { #"{"id": 1, "name": "\#($0)", "email": "a@example.com"}"# })
        let first = try #require(messages.first)
        #expect(first.headers["signal"] == "post_save")
        #expect(first.headers["model"] == "myapp.customer")
        #expect(first.headers["source"] == "crm")
        #expect(first.headers["message_id"]?.hasPrefix("msg_") == true)
        let metrics = try await send("GET", try await service.httpBaseURL() + "/metrics").body
        #expect(metrics.contains(#"action_triggers_delivery_attempts_total{target="kafka",outcome="succeeded"} 3"#))
    }

    @Test("queue conn_details add librdkafka properties")
    func queueConnectionProperties() async throws {
        let cluster = try KafkaMockCluster(brokers: 1)
        try cluster.createTopic("queue-level", partitions: 1)
        let harness = try Harness()
        let service = try await harness.startService(settings: settings(harness, connDetails: "{}", params: #"{"topic": "queue-level"}"#))
        let queue = #"{"name": "kafka", "conn_details": {"bootstrap.servers": "\#(cluster.bootstrapServers)", "linger.ms": 5, "client.id": "crm"}}"#

        let reply = try await send("POST", try await service.httpBaseURL() + "/api/action-triggers", body: customerConfig(queue: queue))
        #expect(reply.status == 201, "\(reply.body)")
        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('Ada', 'ada@example.com')")
        try await harness.waitUntil("the delivery succeeds") {
            try harness.succeededDeliveries() == 1
        }

        let consumer = try KafkaConsumer(bootstrapServers: cluster.bootstrapServers, topic: "queue-level", partitions: 1)
        let message = try #require(try consumer.next(timeout: .seconds(10)))
        #expect(String(decoding: message.value, as: UTF8.self) == #"{"id": 1, "name": "Ada", "email": "ada@example.com"}"#)
    }

    @Test("oversized message fails at once")
    func oversized() async throws {
        let cluster = try KafkaMockCluster(brokers: 1)
        try cluster.createTopic("customers", partitions: 1)
        let harness = try Harness()
        let service = try await harness.startService(settings: settings(
            harness, connDetails: #"{"bootstrap.servers": "\#(cluster.bootstrapServers)", "message.max.bytes": 100000}"#,
            params: #"{"topic": "customers"}"#))
        try harness.createConfig(customerConfig(queue: #"{"name": "kafka"}"#))

        try harness.database.query(
            "INSERT INTO myapp_customer (name, email) VALUES ($1, 'a@example.com')", [String(repeating: "x", count: 300_000)])
        try await harness.waitUntil("the delivery fails") { try harness.onlyDeliveryStatus() == "failed" }

        let attempts = try harness.database.query("SELECT outcome, error FROM action_triggers.delivery_attempt")
        #expect(attempts.rows.count == 1)
        #expect(attempts.rows.first?["outcome"] == "failed")
        let error = attempts.rows.first?["error"] ?? ""
        #expect(error.contains("for table public.myapp_customer, key myapp.customer:1, is over the Kafka size limit"), "\(error)")
        #expect(service.log.contains("publish failed, not retrying"))
        #expect(service.log.contains("key myapp.customer:1"))
    }

    @Test("unreachable cluster is retried")
    func unreachable() async throws {
        let harness = try Harness()
        let receiver = try TestReceiver()
        let closedPort = receiver.port
        receiver.stop()
        try await harness.startService(settings: settings(
            harness, connDetails: #"{"bootstrap.servers": "127.0.0.1:\#(closedPort)"}"#, params: #"{"topic": "t"}"#,
            maxBrokerTimeout: 1))
        try harness.createConfig(customerConfig(queue: #"{"name": "kafka"}"#))

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('Ada', 'a@example.com')")
        try await harness.waitUntil("the first attempt fails") {
            try harness.database.query("SELECT count(*) AS n FROM action_triggers.delivery_attempt").singleRow().int("n") >= 1
        }

        let attempt = try harness.database.query(
            "SELECT outcome, error FROM action_triggers.delivery_attempt ORDER BY attempt LIMIT 1").singleRow()
        #expect(attempt["outcome"] == "retry")
        #expect(attempt["error"]?.hasPrefix("publish failed: ") == true, "\(attempt["error"] ?? "")")
    }

    @Test("librdkafka properties are checked at start", arguments: [
        (#""no.such.property": "1""#, "No such configuration property"),
        (#""acks": "banana""#, "Invalid value"),
    ])
    func propertiesCheckedAtStart(property: String, message: String) async throws {
        let harness = try Harness()
        let settings = settings(harness, connDetails: #"{"bootstrap.servers": "127.0.0.1:9092", \#(property)}"#, params: #"{"topic": "t"}"#)
        let service = try ServiceProcess(databaseURL: harness.database.url, settings: settings)

        try await harness.waitUntil("the service exits") { !service.isRunning }

        #expect(service.terminationStatus == 1)
        #expect(service.log.contains("invalid settings: brokers.kafka.conn_details: "), "\(service.log)")
        #expect(service.log.contains(message), "\(service.log)")
    }

    @Test("queue settings are checked against the broker", arguments: [
        (#"{"bootstrap.servers": "127.0.0.1:1"}"#, #"{}"#, "msg_broker_queues[0].parameters.topic",
         "broker kafka needs a topic, in its params or here"),
        (#"{}"#, #"{"topic": "t"}"#, "msg_broker_queues[0].conn_details.bootstrap.servers",
         "broker kafka needs bootstrap.servers, in its conn_details or here"),
    ])
    func queueValidation(connDetails: String, params: String, path: String, message: String) async throws {
        let harness = try Harness()
        let service = try await harness.startService(settings: settings(harness, connDetails: connDetails, params: params))

        let reply = try await send(
            "POST", try await service.httpBaseURL() + "/api/action-triggers", body: customerConfig(queue: #"{"name": "kafka"}"#))

        #expect(reply.status == 400)
        let errors = try #require(try reply.json() as? [String: [String]], "\(reply.body)")
        #expect(errors[path] == [message], "\(reply.body)")
    }
}
