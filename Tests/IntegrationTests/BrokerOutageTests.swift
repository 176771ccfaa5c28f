import Foundation
import KafkaClient
import PostgresClient
import RabbitMQClient
import RedisClient
import Testing

/// Each broker type goes away while a change is pending: attempts fail and are
/// retried with backoff, and the message arrives once, when the broker is back.
@Suite("Broker outages", .serialized)
struct BrokerOutageTests {
    private static func uniqueName(_ prefix: String) -> String {
        "\(prefix)-\(UUID().uuidString.prefix(8))"
    }

    private static let expectedBody = #"{"id": 1, "name": "Ada", "email": "ada@example.com"}"#

    /// Starts the service with one broker, inserts a customer while the broker is
    /// down, waits for two failed attempts, then calls `restore`.
    private func startOutage(
        _ harness: Harness, broker: String, maxBrokerTimeout: Double = 10, environment: [String: String] = [:],
        restore: () throws -> Void
    ) async throws {
        let settings = Harness.settings(allowing: [harness.receiver], maxAttempts: 30, extra: """
            "max_broker_timeout": \(maxBrokerTimeout),
            "brokers": {"down": \(broker)}
            """)
        try await harness.startService(settings: settings, environment: environment)
        try harness.createConfig("""
            {"config_signals": [{"signal": "post_save"}], "content_types": [{"app_label": "myapp", "model_name": "Customer"}],
             "msg_broker_queues": [{"name": "down"}], "active": true}
            """)

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('Ada', 'ada@example.com')")
        try await harness.waitUntil("two attempts fail", timeout: .seconds(40)) {
            try harness.database.query(
                "SELECT count(*) AS n FROM action_triggers.delivery_attempt WHERE outcome = 'retry'").singleRow().int("n") >= 2
        }
        let started = try harness.database.query(
            "SELECT extract(epoch FROM max(started_at) - min(started_at)) AS gap FROM action_triggers.delivery_attempt")
            .singleRow().double("gap")
        #expect(started >= 0.2, "the retry came after \(started) s, before the backoff")

        try restore()
        try await harness.waitUntil("the delivery succeeds", timeout: .seconds(40)) {
            try harness.onlyDeliveryStatus() == "succeeded"
        }
    }

    @Test("Redis")
    func redis() async throws {
        let proxy = try TCPProxy(targetPort: try TestEnvironment.redisPort())
        proxy.down()
        let stream = Self.uniqueName("outage")
        let harness = try Harness()
        try await startOutage(
            harness, broker: #"{"broker_type": "redis", "conn_details": {"port": \#(proxy.port)}, "params": {"stream": "\#(stream)"}}"#,
            maxBrokerTimeout: 2) { try proxy.up() }

        let redis = try RedisConnection(host: "127.0.0.1", port: try TestEnvironment.redisPort(), timeout: .seconds(5))
        guard case .array(let entries) = try redis.command("XRANGE", stream, "-", "+"), case .array(let entry)? = entries.first,
              case .array(let fields) = entry[1] else {
            Issue.record("no stream entry")
            return
        }
        #expect(entries.count == 1)
        #expect(fields.count >= 2)
        #expect(fields.dropFirst().first?.text == Self.expectedBody)
    }

    @Test("RabbitMQ")
    func rabbitMQ() async throws {
        let port = try TestEnvironment.rabbitMQPort()
        let queue = Self.uniqueName("outage")
        let consumer = try RabbitMQConnection(
            host: "127.0.0.1", port: port, virtualHost: "/", username: "guest", password: "guest", timeout: .seconds(10))
        try consumer.declareQueue(queue)
        let proxy = try TCPProxy(targetPort: port)
        proxy.down()
        let harness = try Harness()
        try await startOutage(
            harness, broker: #"{"broker_type": "rabbitmq", "conn_details": {"port": \#(proxy.port)}, "params": {"queue": "\#(queue)"}}"#,
            maxBrokerTimeout: 2) { try proxy.up() }

        let message = try #require(try consumer.get(queue: queue))
        #expect(String(decoding: message.body, as: UTF8.self) == Self.expectedBody)
        #expect(try consumer.get(queue: queue) == nil)
    }

    @Test("Kafka")
    func kafka() async throws {
        let cluster = try KafkaMockCluster(brokers: 1)
        try cluster.createTopic("outage", partitions: 1)
        try cluster.setBroker(1, up: false)
        let harness = try Harness()
        try await startOutage(
            harness,
            broker: #"{"broker_type": "kafka", "conn_details": {"bootstrap.servers": "\#(cluster.bootstrapServers)"}, "params": {"topic": "outage"}}"#,
            maxBrokerTimeout: 1) { try cluster.setBroker(1, up: true) }

        let consumer = try KafkaConsumer(bootstrapServers: cluster.bootstrapServers, topic: "outage", partitions: 1)
        var messages: [KafkaMessage] = []
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if let message = try consumer.next(timeout: .milliseconds(500)) {
                messages.append(message)
            } else if !messages.isEmpty {
                break
            }
        }
        #expect(messages.map { String(decoding: $0.value, as: UTF8.self) } == [Self.expectedBody])
    }

    @Test("SQS")
    func sqs() async throws {
        let motoURL = try TestEnvironment.motoURL()
        let moto = MotoClient(endpoint: motoURL)
        let queueURL = try await moto.createQueue(Self.uniqueName("outage"))
        let proxy = try TCPProxy(targetPort: try #require(URL(string: motoURL)?.port))
        proxy.down()
        let harness = try Harness()
        try await startOutage(
            harness,
            broker: """
                {"broker_type": "aws_sqs", "conn_details": {"endpoint_url": "http://127.0.0.1:\(proxy.port)", "region_name": "us-east-1",
                 "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}, "params": {"queue_url": "\(queueURL)"}}
                """,
            maxBrokerTimeout: 2) { try proxy.up() }

        let messages = try await moto.receive(queueURL: queueURL)
        #expect(messages.map(\.body) == [Self.expectedBody])
    }

    @Test("Pub/Sub")
    func pubSub() async throws {
        let harness = try Harness()
        let proxy = try TCPProxy(targetPort: harness.receiver.port)
        proxy.down()
        harness.receiver.defaultResponse = .init(status: 200, body: #"{"messageIds": ["1"]}"#)
        try await startOutage(
            harness,
            broker: #"{"broker_type": "gcp_pubsub", "conn_details": {"project": "demo"}, "params": {"topic": "outage"}}"#,
            maxBrokerTimeout: 2, environment: ["PUBSUB_EMULATOR_HOST": "127.0.0.1:\(proxy.port)"]) { try proxy.up() }

        let requests = harness.receiver.requests
        #expect(requests.count == 1)
        let object = try JSONSerialization.jsonObject(with: Data(try #require(requests.first).body)) as? [String: Any]
        let encoded = try #require((object?["messages"] as? [[String: Any]])?.first?["data"] as? String)
        #expect(Data(base64Encoded: encoded).map { String(decoding: $0, as: UTF8.self) } == Self.expectedBody)
    }
}
