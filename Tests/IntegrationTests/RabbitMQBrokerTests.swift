import Foundation
import PostgresClient
import RabbitMQClient
import Testing

/// Deliveries to a real RabbitMQ server started by `scripts/test`.
@Suite("RabbitMQ broker", .serialized)
struct RabbitMQBrokerTests {
    /// Returns a name no other test run uses, for queues and exchanges.
    private static func uniqueName(_ prefix: String) -> String {
        "\(prefix)-\(UUID().uuidString.prefix(8))"
    }

    private func connect() throws -> RabbitMQConnection {
        try RabbitMQConnection(
            host: "127.0.0.1", port: try TestEnvironment.rabbitMQPort(), virtualHost: "/", username: "guest",
            password: "guest", timeout: .seconds(10))
    }

    @discardableResult
    private func startService(_ harness: Harness, params: String) async throws -> ServiceProcess {
        let port = try TestEnvironment.rabbitMQPort()
        let settings = Harness.settings(allowing: [harness.receiver], extra: """
            "brokers": {"rabbit": {"broker_type": "rabbitmq", "conn_details": {"host": "127.0.0.1", "port": \(port)}, "params": \(params)}}
            """)
        let service = try await harness.startService(settings: settings)
        try harness.createConfig("""
            {
              "config_signals": [{"signal": "post_save"}],
              "content_types": [{"app_label": "myapp", "model_name": "Customer"}],
              "msg_broker_queues": [{"name": "rabbit", "parameters": {"source": "crm"}}],
              "active": true
            }
            """)
        return service
    }

    @Test("queue receives a persistent message with headers")
    func queueMessage() async throws {
        let queue = Self.uniqueName("customers")
        let consumer = try connect()
        try consumer.declareQueue(queue)
        let harness = try Harness()
        let service = try await startService(harness, params: #"{"queue": "\#(queue)"}"#)

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('Zoë \"Z\"', 'z@example.com')")
        try await harness.waitUntil("the delivery succeeds") { try harness.onlyDeliveryStatus() == "succeeded" }
        let message = try #require(try consumer.get(queue: queue))

        let eventID = try harness.database.query("SELECT id FROM action_triggers.event").singleRow().string("id")
        let queueID = try harness.database.query("SELECT id FROM action_triggers.msg_broker_queue").singleRow().string("id")
        #expect(String(decoding: message.body, as: UTF8.self) == #"{"id": 1, "name": "Zoë \"Z\"", "email": "z@example.com"}"#)
        #expect(message.properties["message_id"] == "msg_\(eventID)_q\(queueID)")
        #expect(message.properties["delivery_mode"] == "2")
        #expect(message.properties["event_id"] == eventID)
        #expect(message.properties["signal"] == "post_save")
        #expect(message.properties["model"] == "myapp.customer")
        #expect(message.properties["source"] == "crm")
        #expect(try consumer.get(queue: queue) == nil)
        let metrics = try await send("GET", try await service.httpBaseURL() + "/metrics").body
        #expect(metrics.contains(#"action_triggers_delivery_attempts_total{target="rabbitmq",outcome="succeeded"} 1"#))
    }

    @Test("unroutable message is retried, never counted as delivered")
    func unroutable() async throws {
        let queue = Self.uniqueName("undeclared")
        let harness = try Harness()
        try await startService(harness, params: #"{"queue": "\#(queue)"}"#)

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('Ada', 'ada@example.com')")
        try await harness.waitUntil("the first attempt fails") {
            try harness.database.query("SELECT count(*) AS n FROM action_triggers.delivery_attempt").singleRow().int("n") >= 1
        }

        let attempt = try harness.database.query(
            "SELECT outcome, error FROM action_triggers.delivery_attempt ORDER BY attempt LIMIT 1").singleRow()
        #expect(attempt["outcome"] == "retry")
        #expect(attempt["error"] == "publish failed: queue \"\(queue)\": the broker returned the message as unroutable: 312 NO_ROUTE")
        #expect(try harness.onlyDeliveryStatus() != "succeeded")

        // Once the queue exists, the retry delivers the message.
        let consumer = try connect()
        try consumer.declareQueue(queue)
        try await harness.waitUntil("the retry succeeds") { try harness.onlyDeliveryStatus() == "succeeded" }
        #expect(try consumer.get(queue: queue) != nil)
    }

    @Test("missing exchange fails the attempt and the connection recovers")
    func missingExchange() async throws {
        let harness = try Harness()
        try await startService(harness, params: #"{"exchange": "\#(Self.uniqueName("nowhere"))", "routing_key": "x"}"#)

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('Ada', 'ada@example.com')")
        try await harness.waitUntil("two attempts fail") {
            try harness.database.query("SELECT count(*) AS n FROM action_triggers.delivery_attempt").singleRow().int("n") >= 2
        }

        let errors = try harness.database.query(
            "SELECT error FROM action_triggers.delivery_attempt ORDER BY attempt LIMIT 2").rows.map { $0["error"] ?? "" }
        for error in errors {
            #expect(error.contains("the broker closed the channel: 404 NOT_FOUND - no exchange"), "\(error)")
        }
    }

    @Test("queue settings are checked against the broker", arguments: [
        (#"{"queue": "a", "exchange": "b"}"#, "msg_broker_queues[0].parameters.queue",
         "give either queue (the default exchange) or exchange with an optional routing_key, not both"),
        (#"{}"#, "msg_broker_queues[0].parameters.queue",
         "broker rabbit needs a queue, or an exchange (the routing_key is optional), in its params or here"),
    ])
    func queueValidation(parameters: String, path: String, message: String) async throws {
        let harness = try Harness()
        let port = try TestEnvironment.rabbitMQPort()
        let service = try await harness.startService(settings: Harness.settings(allowing: [harness.receiver], extra: """
            "brokers": {"rabbit": {"broker_type": "rabbitmq", "conn_details": {"port": \(port)}}}
            """))
        let body = """
            {"config_signals": [{"signal": "post_save"}], "content_types": [{"app_label": "myapp", "model_name": "Customer"}],
             "msg_broker_queues": [{"name": "rabbit", "parameters": \(parameters)}], "active": true}
            """

        let reply = try await send("POST", try await service.httpBaseURL() + "/api/action-triggers", body: body)

        #expect(reply.status == 400)
        let errors = try #require(try reply.json() as? [String: [String]], "\(reply.body)")
        #expect(errors[path] == [message], "\(reply.body)")
    }
}
