import Foundation
import PostgresClient
import Testing

/// Standard Webhooks signatures, verified by the `standardwebhooks` package from PyPI.
@Suite("Webhook signatures", .serialized)
struct SignatureTests {
    /// Two secrets active at once, as during a rotation: a literal one and a dynamic value.
    static let literalSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    static let environmentSecret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"

    private func config(_ harness: Harness, secrets: String) -> String {
        """
        {
          "config_signals": [{"signal": "post_save"}],
          "content_types": [{"app_label": "myapp", "model_name": "Customer"}],
          "webhooks": [{"url": "\(harness.receiver.baseURL)/signed", "http_method": "POST", "signing_secrets": \(secrets)}],
          "active": true
        }
        """
    }

    /// Runs standardwebhooks' verifier on a request; returns its error text, or nil when the signature is valid.
    private func verify(_ request: ReceivedRequest, secret: String) throws -> String? {
        let script = """
            import sys
            from standardwebhooks.webhooks import Webhook
            secret, message_id, timestamp, signature = sys.argv[1:5]
            body = sys.stdin.buffer.read()
            Webhook(secret).verify(body, {"webhook-id": message_id, "webhook-timestamp": timestamp, "webhook-signature": signature})
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try TestEnvironment.python())
        process.arguments = [
            "-c", script, secret, request.header("webhook-id") ?? "", request.header("webhook-timestamp") ?? "",
            request.header("webhook-signature") ?? "",
        ]
        let input = Pipe()
        let errors = Pipe()
        process.standardInput = input
        process.standardError = errors
        try process.run()
        input.fileHandleForWriting.write(Data(request.body))
        try input.fileHandleForWriting.close()
        process.waitUntilExit()
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return process.terminationStatus == 0 ? nil : text
    }

    @Test("each active secret verifies, also after a PUT of the redacted config")
    func rotation() async throws {
        let harness = try Harness()
        let settings = Harness.settings(
            allowing: [harness.receiver], extra: #""dynamic_values": {"hooks.secret": {"env": "HOOKS_SECRET"}}"#)
        let service = try await harness.startService(settings: settings, environment: ["HOOKS_SECRET": Self.environmentSecret])
        let api = try await service.httpBaseURL() + "/api/action-triggers"
        let created = try await send("POST", api, body: config(harness, secrets: #"["\#(Self.literalSecret)", "{{ hooks.secret }}"]"#))
        #expect(created.status == 201, "\(created.body)")
        #expect(created.body.contains(#""signing_secrets": ["whsec_…LaSw", "{{ hooks.secret }}"]"#), "\(created.body)")
        #expect(!created.body.contains(Self.literalSecret))

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('Ada', 'ada@example.com')")
        let first = try #require(try await harness.receiver.waitForRequests(count: 1, timeout: .seconds(20)).first)
        #expect(first.header("webhook-signature")?.split(separator: " ").count == 2)
        #expect(try verify(first, secret: Self.literalSecret) == nil)
        #expect(try verify(first, secret: Self.environmentSecret) == nil)
        #expect(try verify(first, secret: "whsec_" + Data(repeating: 7, count: 32).base64EncodedString()) != nil)

        // A client that sends back what GET shows keeps the stored secrets.
        let id = try #require((try created.json() as? [String: Any])?["id"] as? Int)
        let shown = try await send("GET", "\(api)/\(id)")
        let replaced = try await send("PUT", "\(api)/\(id)", body: shown.body)
        #expect(replaced.status == 200, "\(replaced.body)")
        try harness.database.query("UPDATE myapp_customer SET name = 'Ada L.'")
        let requests = try await harness.receiver.waitForRequests(count: 2, timeout: .seconds(20))
        let second = try #require(requests.last)
        #expect(try verify(second, secret: Self.literalSecret) == nil)
        #expect(!service.log.contains(Self.literalSecret))
        #expect(!service.log.contains(Self.environmentSecret))
    }

    @Test("invalid secrets are 400", arguments: [
        (#"["secret"]"#, "webhooks[0].signing_secrets[0]",
         "must be whsec_ followed by base64, as Standard Webhooks secrets are, or a {{ name }} dynamic value"),
        (#"["whsec_c2hvcnQ="]"#, "webhooks[0].signing_secrets[0]", "must encode 24 to 64 bytes of key, as Standard Webhooks recommends"),
        (#"["whsec_…abcd"]"#, "webhooks[0].signing_secrets[0]",
         "is a redacted secret that matches no stored secret of this webhook; send the full secret"),
        (#""whsec_x""#, "webhooks[0].signing_secrets", "must be a list of whsec_ secrets (got string)"),
        (#"[1]"#, "webhooks[0].signing_secrets[0]", "must be a string (got number)"),
    ])
    func invalidSecrets(secrets: String, path: String, message: String) async throws {
        let harness = try Harness()
        let service = try await harness.startService()

        let reply = try await send("POST", try await service.httpBaseURL() + "/api/action-triggers", body: config(harness, secrets: secrets))

        #expect(reply.status == 400)
        let errors = try #require(try reply.json() as? [String: [String]], "\(reply.body)")
        #expect(errors[path] == [message], "\(reply.body)")
    }
}
