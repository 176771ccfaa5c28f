import Foundation
import PostgresClient
import Testing

/// Dynamic values: `{{ name }}` in webhook headers, resolved at delivery from the settings' allowlist.
@Suite("Dynamic values", .serialized)
struct DynamicValueTests {
    private func customerConfig(_ harness: Harness, headers: String) -> String {
        """
        {
          "config_signals": [{"signal": "post_save"}],
          "content_types": [{"app_label": "myapp", "model_name": "Customer"}],
          "webhooks": [{"url": "\(harness.receiver.baseURL)/customer", "http_method": "POST", "headers": \(headers)}],
          "active": true
        }
        """
    }

    @Test("example 1 token comes from the environment")
    func environmentToken() async throws {
        let harness = try Harness()
        let secret = "env-secret-\(UInt32.random(in: 100_000...999_999))"
        let settings = Harness.settings(
            allowing: [harness.receiver],
            extra: #""dynamic_values": {"myapp.utils.get_token": {"env": "MYAPP_API_TOKEN"}}"#)
        let service = try await harness.startService(settings: settings, environment: ["MYAPP_API_TOKEN": secret])
        let base = try await service.httpBaseURL() + "/api/action-triggers"

        let created = try await send(
            "POST", base, body: customerConfig(harness, headers: #"{"Authorization": "Bearer {{ myapp.utils.get_token }}"}"#))
        #expect(created.status == 201, "\(created.body)")
        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('Ada', 'ada@example.com')")
        let request = try #require(try await harness.receiver.waitForRequests(count: 1, timeout: .seconds(20)).first)

        #expect(request.header("Authorization") == "Bearer \(secret)")
        let listed = try await send("GET", base)
        #expect(listed.body.contains("Bearer {{ myapp.utils.get_token }}"))
        #expect(!listed.body.contains(secret))
        #expect(!created.body.contains(secret))
        try await harness.waitUntil("the delivery is recorded") { try harness.onlyDeliveryStatus() == "succeeded" }
        #expect(!service.log.contains(secret))
        let stored = try harness.database.query("SELECT headers::text AS headers FROM action_triggers.delivery").singleRow()
        #expect(try !stored.string("headers").contains(secret))
    }

    @Test("unset environment variable is a start-up warning")
    func unsetVariableWarned() async throws {
        let harness = try Harness()
        let settings = Harness.settings(
            allowing: [harness.receiver],
            extra: #""dynamic_values": {"myapp.set": {"env": "MYAPP_SET_TOKEN"}, "myapp.unset": {"env": "MYAPP_UNSET_TOKEN"}}"#)
        let service = try await harness.startService(settings: settings, environment: ["MYAPP_SET_TOKEN": "present"])

        try await service.waitForLog("msg=\"dynamic value's environment variable is not set; deliveries that use it fail until it is\"")
        #expect(service.log.contains("dynamic_value.name=myapp.unset variable=MYAPP_UNSET_TOKEN"), "\(service.log)")
        #expect(!service.log.contains("variable=MYAPP_SET_TOKEN"))
        #expect(!service.log.contains("present"))
    }

    @Test("name not in dynamic_values is 400")
    func unlistedName() async throws {
        let harness = try Harness()
        let settings = Harness.settings(
            allowing: [harness.receiver], extra: #""dynamic_values": {"myapp.utils.get_token": {"env": "X"}}"#)
        let service = try await harness.startService(settings: settings)
        let base = try await service.httpBaseURL() + "/api/action-triggers"

        let reply = try await send(
            "POST", base, body: customerConfig(harness, headers: #"{"X-Key": "{{ myapp.utils.other }}", "X-Bad": "{{ not valid }}"}"#))

        #expect(reply.status == 400)
        let errors = try #require(try reply.json() as? [String: [String]])
        #expect(errors["webhooks[0].headers.X-Key"] == [
            "dynamic value myapp.utils.other is not in dynamic_values of the settings file; add it there to allow it",
        ])
        #expect(errors["webhooks[0].headers.X-Bad"]?.first?.contains("is not a dynamic value") == true)
        #expect(try harness.database.query("SELECT count(*) AS n FROM action_triggers.config").singleRow().int("n") == 0)
    }

    @Test("file and SQL sources resolve")
    func fileAndSQL() async throws {
        let harness = try Harness()
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("dynamic-\(UUID().uuidString)")
        try Data("file-secret\n".utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let settings = Harness.settings(allowing: [harness.receiver], extra: """
            "dynamic_values": {
              "secrets.file": {"file": "\(file.path)"},
              "secrets.sql": {"sql": "SELECT 'sql-' || 'secret'", "cache_secs": 0}
            }
            """)
        try await harness.startService(settings: settings)
        try harness.createConfig(customerConfig(
            harness, headers: #"{"X-File": "{{ secrets.file }}", "X-SQL": "v={{secrets.sql}};"}"#))

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('Ada', 'ada@example.com')")
        let request = try #require(try await harness.receiver.waitForRequests(count: 1, timeout: .seconds(20)).first)

        #expect(request.header("X-File") == "file-secret")
        #expect(request.header("X-SQL") == "v=sql-secret;")
    }

    @Test("failed resolution is retried and named")
    func failedResolutionRetried() async throws {
        let harness = try Harness()
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("dynamic-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: file) }
        let settings = Harness.settings(
            allowing: [harness.receiver], maxAttempts: 20,
            extra: #""dynamic_values": {"secrets.late": {"file": "\#(file.path)"}}"#)
        let service = try await harness.startService(settings: settings)
        try harness.createConfig(customerConfig(harness, headers: #"{"X-Late": "{{ secrets.late }}"}"#))

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('Ada', 'ada@example.com')")
        try await harness.waitUntil("the first attempt fails") {
            try harness.database.query("SELECT count(*) AS n FROM action_triggers.delivery_attempt").singleRow().int("n") >= 1
        }
        let attempt = try harness.database.query(
            "SELECT outcome, error FROM action_triggers.delivery_attempt ORDER BY attempt LIMIT 1").singleRow()
        #expect(attempt["outcome"] == "retry")
        #expect(attempt["error"]?.contains("dynamic value secrets.late: file \(file.path) could not be read") == true)
        #expect(harness.receiver.requests.isEmpty)

        try Data("arrived-late".utf8).write(to: file)
        let request = try #require(try await harness.receiver.waitForRequests(count: 1, timeout: .seconds(20)).first)
        #expect(request.header("X-Late") == "arrived-late")
        #expect(!service.log.contains("arrived-late"))
    }
}
