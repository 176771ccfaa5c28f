import Foundation
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

    /// Compares a stored config with the body it was made from; the stored form adds
    /// `id` and empty defaults (`headers`, `conn_details`, `parameters`, lists).
    private func expectSameConfig(_ stored: [String: Any], _ posted: [String: Any]) {
        for key in ["config_signals", "content_types", "active", "payload"] {
            // A config without a payload is stored with "payload": null.
            let expected = posted[key] ?? (key == "payload" ? NSNull() : nil)
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
