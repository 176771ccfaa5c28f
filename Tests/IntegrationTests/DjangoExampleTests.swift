import Foundation
import RedisClient
import Testing

/// The worked example in `examples/django`: its schema, its request files sent by its
/// script through the REST API, and its rows, delivered to a loopback receiver and Redis.
@Suite("Django example", .serialized)
struct DjangoExampleTests {
    private static let exampleDirectory = TestEnvironment.packageRoot.appendingPathComponent("examples/django")
    private static let apiToken = "example-api-token"

    /// Runs the example's `create_configs.py` with the test environment's Python.
    private func createConfigs(api: String, token: String, webhookBase: String) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try TestEnvironment.python())
        process.arguments = [
            Self.exampleDirectory.appendingPathComponent("create_configs.py").path,
            "--api", api, "--token", token, "--webhook-base", webhookBase,
        ]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, text)
    }

    /// Returns the entries of a Redis stream as field dictionaries, oldest first.
    private func streamEntries(_ stream: String, port: Int) throws -> [[String: String]] {
        let redis = try RedisConnection(host: "127.0.0.1", port: port, timeout: .seconds(5))
        guard case .array(let entries) = try redis.command("XRANGE", stream, "-", "+") else {
            throw ServiceProcessError(description: "XRANGE \(stream) did not return a list")
        }
        return entries.map { entry in
            guard case .array(let parts) = entry, parts.count == 2, case .array(let fieldList) = parts[1] else {
                return [:]
            }
            var fields: [String: String] = [:]
            for index in stride(from: 0, to: fieldList.count - 1, by: 2) {
                fields[fieldList[index].text ?? ""] = fieldList[index + 1].text
            }
            return fields
        }
    }

    private func json(_ text: String) throws -> NSDictionary {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? NSDictionary)
    }

    @Test("three API examples deliver end to end")
    func examplesDeliver() async throws {
        let schema = try String(contentsOf: Self.exampleDirectory.appendingPathComponent("schema.sql"), encoding: .utf8)
        let rows = try String(contentsOf: Self.exampleDirectory.appendingPathComponent("rows.sql"), encoding: .utf8)
        let redisPort = try TestEnvironment.redisPort()
        let suffix = UUID().uuidString.prefix(8)
        let productStream = "example-products-\(suffix)"
        let saleStream = "example-sales-\(suffix)"
        let harness = try Harness(schema: schema)
        // The two broker names of example 2, both Redis streams here.
        let settings = Harness.settings(allowing: [harness.receiver], extra: """
            "dynamic_values": {
              "myapp.utils.get_token": {"env": "MYAPP_WEBHOOK_TOKEN"},
              "myapp.utils.get_product_id": {"env": "MYAPP_PRODUCT_ID"},
              "myapp.utils.get_sale_id": {"env": "MYAPP_SALE_ID"}
            },
            "brokers": {
              "my-msg-broker-config": {"broker_type": "redis",
                "conn_details": {"host": "127.0.0.1", "port": \(redisPort)}, "params": {"stream": "\(productStream)"}},
              "my-other-msg-broker-config": {"broker_type": "redis",
                "conn_details": {"host": "127.0.0.1", "port": \(redisPort)}, "params": {"stream": "\(saleStream)"}}
            }
            """)
        let service = try await harness.startService(settings: settings, environment: [
            "ACTION_TRIGGERS_API_TOKEN": Self.apiToken,
            "MYAPP_WEBHOOK_TOKEN": "token-42", "MYAPP_PRODUCT_ID": "p-7", "MYAPP_SALE_ID": "s-9",
        ])
        let api = try await service.httpBaseURL() + "/api/action-triggers"

        let unauthorized = try createConfigs(api: api, token: "", webhookBase: harness.receiver.baseURL)
        #expect(unauthorized.status == 1)
        #expect(unauthorized.output.contains("returned HTTP 401"), "\(unauthorized.output)")
        let created = try createConfigs(api: api, token: Self.apiToken, webhookBase: harness.receiver.baseURL)
        #expect(created.status == 0, "\(created.output)")
        #expect(created.output.components(separatedBy: "created config ").count - 1 == 3, "\(created.output)")
        #expect(try harness.database.query("SELECT count(*) AS n FROM action_triggers.config").singleRow().int("n") == 3)

        try harness.database.execute(rows)
        try await harness.waitUntil("9 webhooks and 4 broker messages succeed") {
            try harness.succeededDeliveries() == 13
        }

        let requests = harness.receiver.requests
        #expect(requests.count == 9)
        for request in requests {
            #expect(request.header("Authorization") == "Bearer token-42", "\(request.path)")
            #expect(request.header("webhook-id")?.hasPrefix("msg_") == true, "\(request.path)")
        }
        #expect(Set(requests.compactMap { $0.header("webhook-id") }).count == 9)

        // Example 1: every save and delete of a customer, in commit order per row.
        let customers = harness.requests(to: "/example-1")
        #expect(customers.count == 4)
        // The first event is Ada's insert, whose body is the row image exactly as jsonb writes it.
        #expect(customers.min { eventID(of: $0) < eventID(of: $1) }?.bodyText
            == #"{"id": 1, "name": "Ada O'Brien", "email": "ada@example.com"}"#)
        let ada = try customers.map { try json($0.bodyText) }.filter { $0["id"] as? Int == 1 }
        #expect(ada == [
            ["id": 1, "name": "Ada O'Brien", "email": "ada@example.com"],
            ["id": 1, "name": "Ada O'Brien", "email": "ada.obrien@example.com"],
        ])
        let bea = try customers.map { try json($0.bodyText) }.filter { $0["id"] as? Int == 2 }
        #expect(bea == [
            ["id": 2, "name": "Bea", "email": "bea@example.com"],
            ["id": 2, "name": "Bea", "email": "bea@example.com"],
        ])

        // Example 2: the product and the sale, to both webhooks and both brokers.
        let product: NSDictionary = ["id": 1, "name": "Desk lamp", "description": #"Brass, 40 cm "tall""#]
        let sale: NSDictionary = ["id": 1, "customer_id": 1, "product_id": 1, "quantity": 2]
        for path in ["/example-2", "/example-2-other"] {
            let bodies = try harness.requests(to: path).map { try json($0.bodyText) }
            #expect(Set(bodies) == Set([product, sale]), "\(path)")
            #expect(bodies.count == 2, "\(path)")
        }
        let productEntries = try streamEntries(productStream, port: redisPort)
        #expect(try Set(productEntries.map { try json($0["payload"] ?? "") }) == Set([product, sale]))
        #expect(productEntries.map { $0["product_id"] } == ["p-7", "p-7"])
        let saleEntries = try streamEntries(saleStream, port: redisPort)
        #expect(try Set(saleEntries.map { try json($0["payload"] ?? "") }) == Set([product, sale]))
        #expect(saleEntries.map { $0["sale_id"] } == ["s-9", "s-9"])

        // Example 3: the sale rendered through the payload template, keys in the order written.
        let rendered = try #require(harness.requests(to: "/example-3").first)
        #expect(harness.requests(to: "/example-3").count == 1)
        #expect(try json(rendered.bodyText) == ["action": "new_sale", "customer_name": "Ada O'Brien", "product_name": "Desk lamp"])
        let keyPositions = ["\"action\"", "\"customer_name\"", "\"product_name\""].compactMap {
            rendered.bodyText.range(of: $0)?.lowerBound
        }
        #expect(keyPositions.count == 3, "\(rendered.bodyText)")
        #expect(keyPositions == keyPositions.sorted(), "\(rendered.bodyText)")
    }
}
