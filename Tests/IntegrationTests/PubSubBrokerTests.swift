import Foundation
import PostgresClient
import Testing

/// Pub/Sub deliveries to a loopback HTTP receiver that responds as the Pub/Sub REST
/// API and Google's token endpoint do.
@Suite("GCP Pub/Sub broker", .serialized)
struct PubSubBrokerTests {
    private func customerConfig() -> String {
        """
        {
          "config_signals": [{"signal": "post_save"}],
          "content_types": [{"app_label": "myapp", "model_name": "Customer"}],
          "msg_broker_queues": [{"name": "pubsub", "parameters": {"source": "crm"}}],
          "active": true
        }
        """
    }

    private func settings(_ harness: Harness, connDetails: String) -> String {
        Harness.settings(allowing: [harness.receiver], extra: """
            "brokers": {"pubsub": {"broker_type": "gcp_pubsub", "conn_details": \(connDetails), "params": {"topic": "orders"}}}
            """)
    }

    /// Returns the published message's decoded data and attributes.
    private func publishedMessage(_ request: ReceivedRequest) throws -> (data: String, attributes: [String: String]) {
        let object = try #require(try JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any])
        let message = try #require((object["messages"] as? [[String: Any]])?.first)
        let encoded = try #require(message["data"] as? String)
        let data = try #require(Data(base64Encoded: encoded))
        return (String(decoding: data, as: UTF8.self), message["attributes"] as? [String: String] ?? [:])
    }

    @Test("emulator host gets the message without credentials")
    func emulator() async throws {
        let harness = try Harness()
        try await harness.startService(
            settings: settings(harness, connDetails: #"{"project": "demo"}"#),
            environment: ["PUBSUB_EMULATOR_HOST": "127.0.0.1:\(harness.receiver.port)"])
        try harness.createConfig(customerConfig())
        harness.receiver.defaultResponse = .init(status: 200, body: #"{"messageIds": ["1"]}"#)

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('Zoë', 'z@example.com')")
        let request = try #require(try await harness.receiver.waitForRequests(count: 1, timeout: .seconds(20)).first)

        #expect(request.method == "POST")
        #expect(request.path == "/v1/projects/demo/topics/orders:publish")
        #expect(request.header("Authorization") == nil)
        let message = try publishedMessage(request)
        #expect(message.data == #"{"id": 1, "name": "Zoë", "email": "z@example.com"}"#)
        #expect(message.attributes["signal"] == "post_save")
        #expect(message.attributes["model"] == "myapp.customer")
        #expect(message.attributes["source"] == "crm")
        #expect(message.attributes["message_id"]?.hasPrefix("msg_") == true)
        try await harness.waitUntil("the delivery succeeds") { try harness.onlyDeliveryStatus() == "succeeded" }
    }

    @Test("service account token is requested once with a signed JWT")
    func serviceAccount() async throws {
        let harness = try Harness()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("pubsub-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let privateKey = folder.appendingPathComponent("key.pem")
        let publicKey = folder.appendingPathComponent("public.pem")
        try runOpenSSL(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", privateKey.path])
        try runOpenSSL(["pkey", "-in", privateKey.path, "-pubout", "-out", publicKey.path])
        let keyFile = folder.appendingPathComponent("service-account.json")
        let keyObject: [String: String] = [
            "type": "service_account", "project_id": "demo", "client_email": "trigger@demo.iam.gserviceaccount.com",
            "private_key": try String(contentsOf: privateKey, encoding: .utf8),
            "token_uri": "\(harness.receiver.baseURL)/token",
        ]
        try JSONSerialization.data(withJSONObject: keyObject).write(to: keyFile)

        try await harness.startService(settings: settings(
            harness, connDetails: #"{"credentials_file": "\#(keyFile.path)", "endpoint_url": "\#(harness.receiver.baseURL)"}"#))
        try harness.createConfig(customerConfig())
        harness.receiver.enqueue(.init(status: 200, body: #"{"access_token": "token-1", "expires_in": 3600}"#))
        harness.receiver.defaultResponse = .init(status: 200, body: #"{"messageIds": ["1"]}"#)

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('Ada', 'ada@example.com')")
        try harness.database.query("UPDATE myapp_customer SET name = 'Ada L.'")
        let requests = try await harness.receiver.waitForRequests(count: 3, timeout: .seconds(20))

        #expect(requests.map(\.path) == ["/token", "/v1/projects/demo/topics/orders:publish", "/v1/projects/demo/topics/orders:publish"])
        #expect(requests.dropFirst().allSatisfy { $0.header("Authorization") == "Bearer token-1" })
        let form = requests[0].bodyText
        #expect(form.hasPrefix("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion="))
        let assertion = String(form.split(separator: "=").last ?? "")
        let parts = assertion.split(separator: ".").map(String.init)
        try #require(parts.count == 3)
        let claims = try #require(try JSONSerialization.jsonObject(with: try base64URLDecoded(parts[1])) as? [String: Any])
        #expect(claims["iss"] as? String == "trigger@demo.iam.gserviceaccount.com")
        #expect(claims["aud"] as? String == "\(harness.receiver.baseURL)/token")
        #expect(claims["scope"] as? String == "https://www.googleapis.com/auth/pubsub")
        let signingInput = folder.appendingPathComponent("input")
        let signature = folder.appendingPathComponent("signature")
        try Data((parts[0] + "." + parts[1]).utf8).write(to: signingInput)
        try base64URLDecoded(parts[2]).write(to: signature)
        try runOpenSSL(["dgst", "-sha256", "-verify", publicKey.path, "-signature", signature.path, signingInput.path])
    }

    private func base64URLDecoded(_ text: String) throws -> Data {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        return try #require(Data(base64Encoded: base64))
    }

    /// Runs the openssl command and fails unless it exits with 0.
    private func runOpenSSL(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "openssl \(arguments.joined(separator: " ")) failed")
    }
}
