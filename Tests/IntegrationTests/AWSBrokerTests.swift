import Foundation
import PostgresClient
import Testing

/// SQS and SNS deliveries against moto, started by `scripts/test`.
@Suite("AWS SQS and SNS brokers", .serialized)
struct AWSBrokerTests {
    private static func uniqueName(_ prefix: String) -> String {
        "\(prefix)-\(UUID().uuidString.prefix(8))"
    }

    private func settings(_ harness: Harness, type: String, params: String) throws -> String {
        let endpoint = try TestEnvironment.motoURL()
        return Harness.settings(allowing: [harness.receiver], extra: """
            "dynamic_values": {"aws.secret": {"env": "TEST_AWS_SECRET"}},
            "brokers": {"aws": {"broker_type": "\(type)", "conn_details": {
                "endpoint_url": "\(endpoint)", "region_name": "us-east-1",
                "aws_access_key_id": "testing", "aws_secret_access_key": "{{ aws.secret }}"},
              "params": \(params)}}
            """)
    }

    private func customerConfig(parameters: String = "{}") -> String {
        """
        {
          "config_signals": [{"signal": "post_save"}],
          "content_types": [{"app_label": "myapp", "model_name": "Customer"}],
          "msg_broker_queues": [{"name": "aws", "parameters": \(parameters)}],
          "active": true
        }
        """
    }

    private func receive(_ moto: MotoClient, queueURL: String, count: Int) async throws
        -> [(body: String, attributes: [String: String], groupID: String?)]
    {
        var messages: [(body: String, attributes: [String: String], groupID: String?)] = []
        let deadline = ContinuousClock.now + .seconds(20)
        while messages.count < count, ContinuousClock.now < deadline {
            messages += try await moto.receive(queueURL: queueURL)
            if messages.count < count {
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        return messages
    }

    @Test("SQS message carries the row, metadata and attributes")
    func sqsQueueURL() async throws {
        let moto = MotoClient(endpoint: try TestEnvironment.motoURL())
        let queueURL = try await moto.createQueue(Self.uniqueName("customers"))
        let harness = try Harness()
        try await harness.startService(
            settings: settings(harness, type: "aws_sqs", params: #"{"queue_url": "\#(queueURL)"}"#),
            environment: ["TEST_AWS_SECRET": "testing"])
        try harness.createConfig(customerConfig(parameters: #"{"source": "crm"}"#))

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('Zoë & \"Z\" <z>', 'z@example.com')")
        let messages = try await receive(moto, queueURL: queueURL, count: 1)

        let message = try #require(messages.first)
        #expect(message.body == #"{"id": 1, "name": "Zoë & \"Z\" <z>", "email": "z@example.com"}"#)
        #expect(message.attributes["signal"] == "post_save")
        #expect(message.attributes["model"] == "myapp.customer")
        #expect(message.attributes["source"] == "crm")
        #expect(message.attributes["message_id"]?.hasPrefix("msg_") == true)
        try await harness.waitUntil("the delivery succeeds") { try harness.onlyDeliveryStatus() == "succeeded" }
    }

    @Test("FIFO queue by name groups one row's messages")
    func fifoQueueName() async throws {
        let moto = MotoClient(endpoint: try TestEnvironment.motoURL())
        let name = Self.uniqueName("orders") + ".fifo"
        let queueURL = try await moto.createQueue(name, fifo: true)
        let harness = try Harness()
        try await harness.startService(
            settings: settings(harness, type: "aws_sqs", params: #"{"queue_name": "\#(name)"}"#),
            environment: ["TEST_AWS_SECRET": "testing"])
        try harness.createConfig(customerConfig())

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('v1', 'a@example.com')")
        try harness.database.query("UPDATE myapp_customer SET name = 'v2'")
        let messages = try await receive(moto, queueURL: queueURL, count: 2)

        #expect(messages.map(\.body) == ["v1", "v2"].map { #"{"id": 1, "name": "\#($0)", "email": "a@example.com"}"# })
        #expect(messages.map(\.groupID) == ["myapp.customer:1", "myapp.customer:1"])
    }

    @Test("SNS topic delivers to a subscribed queue")
    func snsTopic() async throws {
        let moto = MotoClient(endpoint: try TestEnvironment.motoURL())
        let queueName = Self.uniqueName("fanout")
        let queueURL = try await moto.createQueue(queueName)
        let topic = try await moto.call("sns", [("Action", "CreateTopic"), ("Version", "2010-03-31"), ("Name", Self.uniqueName("events"))])
        let topicARN = try #require(MotoClient.elements("TopicArn", in: topic).first)
        try await moto.call("sns", [
            ("Action", "Subscribe"), ("Version", "2010-03-31"), ("TopicArn", topicARN), ("Protocol", "sqs"),
            ("Endpoint", "arn:aws:sqs:us-east-1:123456789012:\(queueName)"),
            ("Attributes.entry.1.key", "RawMessageDelivery"), ("Attributes.entry.1.value", "true"),
        ])
        let harness = try Harness()
        try await harness.startService(
            settings: settings(harness, type: "aws_sns", params: #"{"topic_arn": "\#(topicARN)"}"#),
            environment: ["TEST_AWS_SECRET": "testing"])
        try harness.createConfig(customerConfig())

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('Ada', 'ada@example.com')")
        let messages = try await receive(moto, queueURL: queueURL, count: 1)

        #expect(messages.first?.body == #"{"id": 1, "name": "Ada", "email": "ada@example.com"}"#)
        try await harness.waitUntil("the delivery succeeds") { try harness.onlyDeliveryStatus() == "succeeded" }
    }

    @Test("300 KB row fails at once and names table and key")
    func oversized() async throws {
        let moto = MotoClient(endpoint: try TestEnvironment.motoURL())
        let queueURL = try await moto.createQueue(Self.uniqueName("big"))
        let harness = try Harness()
        let service = try await harness.startService(
            settings: settings(harness, type: "aws_sqs", params: #"{"queue_url": "\#(queueURL)"}"#),
            environment: ["TEST_AWS_SECRET": "testing"])
        try harness.createConfig(customerConfig())

        try harness.database.query(
            "INSERT INTO myapp_customer (name, email) VALUES ($1, 'a@example.com')", [String(repeating: "x", count: 300_000)])
        try await harness.waitUntil("the delivery fails") { try harness.onlyDeliveryStatus() == "failed" }

        let error = try harness.database.query("SELECT last_error FROM action_triggers.delivery").singleRow()
        #expect(error["last_error"]?.contains(
            "for table public.myapp_customer, key myapp.customer:1, is over the aws_sqs limit of 262144 bytes") == true)
        #expect(try harness.database.query("SELECT count(*) AS n FROM action_triggers.delivery_attempt").singleRow().int("n") == 1)
        #expect(service.log.contains("key myapp.customer:1"))
    }

    @Test("queue settings are checked against the broker", arguments: [
        ("aws_sqs", #"{"queue_url": "http://127.0.0.1/q", "queue_name": "q"}"#, "msg_broker_queues[0].parameters.queue_name",
         "give either queue_url or queue_name, not both"),
        ("aws_sqs", #"{}"#, "msg_broker_queues[0].parameters.queue_url",
         "broker aws needs a queue_url or a queue_name, in its params or here"),
        ("aws_sns", #"{}"#, "msg_broker_queues[0].parameters.topic_arn", "broker aws needs a topic_arn, in its params or here"),
        ("aws_sns", #"{"topic_arn": "not-an-arn"}"#, "msg_broker_queues[0].parameters.topic_arn",
         "must be an SNS topic ARN, such as arn:aws:sns:eu-west-1:123456789012:orders"),
        ("aws_sqs", #"{"queue_name": "q", "a1": "1", "a2": "2", "a3": "3", "a4": "4", "a5": "5", "a6": "6", "a7": "7"}"#,
         "msg_broker_queues[0].parameters",
         "has 7 message attributes besides message_id, event_id, signal and model, which the service adds; SQS and SNS take at most 10 in all"),
    ])
    func queueValidation(type: String, parameters: String, path: String, message: String) async throws {
        let harness = try Harness()
        let service = try await harness.startService(settings: settings(harness, type: type, params: "{}"))

        let reply = try await send(
            "POST", try await service.httpBaseURL() + "/api/action-triggers", body: customerConfig(parameters: parameters))

        #expect(reply.status == 400)
        let errors = try #require(try reply.json() as? [String: [String]], "\(reply.body)")
        #expect(errors[path] == [message], "\(reply.body)")
    }
}
