import Foundation
import PostgresClient

#if canImport(Glibc)
import Glibc
#endif

/// One test's world: its own database with the Django tables, an HTTP receiver, and
/// the service running as a child process.
final class Harness {
    let database: TestDatabase
    let receiver: TestReceiver
    private(set) var service: ServiceProcess?

    /// Creates the test's database with `schema`, by default the tables of `TestDatabase.djangoSchema`.
    init(schema: String = TestDatabase.djangoSchema) throws {
        database = try TestDatabase(schema: schema)
        receiver = try TestReceiver()
    }

    deinit {
        service?.stop(signal: SIGKILL)
        receiver.stop()
        database.drop()
    }

    /// Settings with fast retries and an allowlist that names only the given receivers;
    /// `extra` adds members, such as `"dynamic_values": {...}`.
    static func settings(
        allowing receivers: [TestReceiver], maxAttempts: Int = 4, pollInterval: Double = 5, extra: String? = nil
    ) -> String {
        let patterns = receivers.map { "\"http://127\\\\.0\\\\.0\\\\.1:\($0.port)/\"" }.joined(separator: ", ")
        return """
            {
              "whitelisted_webhook_endpoint_patterns": [\(patterns)],
              "retry": {"max_attempts": \(maxAttempts), "base_delay_secs": 0.2, "max_delay_secs": 10, "jitter": 0},
              "poll_interval_secs": \(pollInterval),
              "max_webhook_timeout": 10\(extra.map { ",\n" + $0 } ?? "")
            }
            """
    }

    /// Starts the service (stopping a running one first) and waits until it listens.
    @discardableResult
    func startService(settings: String? = nil, environment: [String: String] = [:]) async throws -> ServiceProcess {
        service?.stop(signal: SIGKILL)
        let process = try ServiceProcess(
            databaseURL: database.url, settings: settings ?? Self.settings(allowing: [receiver]), environment: environment)
        service = process
        try await process.waitUntilReady()
        return process
    }

    /// Runs `action_triggers.create_config` and returns the new id. The payload is
    /// passed again as json, so its keys keep their order.
    @discardableResult
    func createConfig(_ body: String) throws -> Int64 {
        try database.query("SELECT action_triggers.create_config($1::jsonb, $2::json -> 'payload') AS id", [body, body])
            .singleRow().int64("id")
    }

    /// Returns the spec's Example 1 (a customer's post_save and post_delete) aimed at this receiver.
    func exampleOneConfig(path: String = "/customer", active: Bool = true, timeoutSecs: Double = 10) -> String {
        """
        {
          "config_signals": [{"signal": "post_save"}, {"signal": "post_delete"}],
          "content_types": [{"app_label": "myapp", "model_name": "Customer"}],
          "webhooks": [{
            "url": "\(receiver.baseURL)\(path)",
            "http_method": "POST",
            "headers": {"Authorization": "Bearer test-token"},
            "timeout_secs": \(timeoutSecs)
          }],
          "active": \(active)
        }
        """
    }

    /// Returns a config that sends every saved product to `/marker`, used to prove that
    /// events committed before a product insert have been processed.
    func markerConfig() -> String {
        """
        {
          "config_signals": [{"signal": "post_save"}],
          "content_types": [{"app_label": "myapp", "model_name": "Product"}],
          "webhooks": [{"url": "\(receiver.baseURL)/marker", "http_method": "POST"}],
          "active": true
        }
        """
    }

    /// Inserts a product and waits until the receiver has `count` marker requests.
    func insertMarkerAndWait(count: Int) async throws {
        try database.query("INSERT INTO myapp_product (name, description) VALUES ('marker', '')")
        try await waitUntil("marker request \(count) arrives") {
            receiver.requests.filter { $0.path == "/marker" }.count >= count
        }
    }

    /// Polls `condition` every 20 ms until it holds, failing after `timeout`.
    func waitUntil(_ what: String, timeout: Duration = .seconds(20), _ condition: () throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try condition() {
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw ServiceProcessError(description: "timed out after \(timeout) waiting until \(what); service log:\n\(service?.log ?? "")")
    }

    /// Returns the status of the database's only delivery, or `nil` while it has none.
    func onlyDeliveryStatus() throws -> String? {
        try database.query("SELECT status FROM action_triggers.delivery").rows.first?["status"]
    }

    /// Returns the number of deliveries that succeeded.
    func succeededDeliveries() throws -> Int {
        try database.query(
            "SELECT count(*) AS n FROM action_triggers.delivery WHERE status = 'succeeded'").singleRow().int("n")
    }

    /// Returns the requests the receiver got on `path`.
    func requests(to path: String) -> [ReceivedRequest] {
        receiver.requests.filter { $0.path == path }
    }
}

/// Parses a JSON object body; numbers come back as Foundation numbers, so only use it
/// for values that fit a Double exactly.
func jsonObject(_ request: ReceivedRequest) throws -> [String: Any] {
    guard let object = try JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any] else {
        throw ServiceProcessError(description: "body is not a JSON object: \(request.bodyText)")
    }
    return object
}

/// Returns the event id inside a request's `webhook-id` (`msg_<event>_<webhook>`), or -1.
func eventID(of request: ReceivedRequest) -> Int64 {
    guard let messageID = request.header("webhook-id") else { return -1 }
    let parts = messageID.split(separator: "_")
    guard parts.count == 3, let id = Int64(parts[1]) else { return -1 }
    return id
}
