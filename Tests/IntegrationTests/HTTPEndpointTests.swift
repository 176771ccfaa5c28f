import Foundation
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The service's HTTP server: health, readiness, routing errors and the API token.
@Suite("HTTP endpoints", .serialized)
struct HTTPEndpointTests {
    private func get(_ url: String, headers: [String: String] = [:], method: String = "GET") async throws -> (Int, String, HTTPURLResponse) {
        var request = URLRequest(url: try #require(URL(string: url)))
        request.httpMethod = method
        for (name, value) in headers {
            request.setValue(value, forHTTPHeaderField: name)
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        let http = try #require(response as? HTTPURLResponse)
        return (http.statusCode, String(decoding: data, as: UTF8.self), http)
    }

    @Test("health and readiness answer")
    func healthAndReadiness() async throws {
        let harness = try Harness()
        let service = try await harness.startService()
        let base = try await service.httpBaseURL()

        let (healthStatus, healthBody, healthResponse) = try await get(base + "/healthz")
        #expect(healthStatus == 200)
        #expect(healthBody == #"{"status": "ok"}"#)
        #expect(healthResponse.value(forHTTPHeaderField: "Content-Type") == "application/json")
        var readyStatus = 0
        let deadline = ContinuousClock.now + .seconds(10)
        while readyStatus != 200 && ContinuousClock.now < deadline {
            readyStatus = try await get(base + "/readyz/").0
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(readyStatus == 200)
    }

    @Test("readiness fails while the database is unreachable")
    func notReadyWithoutDatabase() async throws {
        let harness = try Harness()
        let service = try await harness.startService()
        let base = try await service.httpBaseURL()
        try harness.database.executeAsAdmin("ALTER DATABASE \(harness.database.name) ALLOW_CONNECTIONS false")
        defer { _ = try? harness.database.executeAsAdmin("ALTER DATABASE \(harness.database.name) ALLOW_CONNECTIONS true") }

        try harness.database.executeAsAdmin("""
            SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE application_name LIKE 'action-triggers/%' AND datname = '\(harness.database.name)'
            """)
        var status = 200
        var body = ""
        let deadline = ContinuousClock.now + .seconds(10)
        while status != 503 && ContinuousClock.now < deadline {
            (status, body, _) = try await get(base + "/readyz")
            try await Task.sleep(for: .milliseconds(20))
        }

        #expect(status == 503)
        #expect(body.contains("\"status\": \"not ready\""))
        #expect(body.contains("\"listener\""))
    }

    @Test("metrics count deliveries and pass promtool")
    func metrics() async throws {
        let harness = try Harness()
        let service = try await harness.startService()
        let base = try await service.httpBaseURL()
        try harness.createConfig(harness.exampleOneConfig())
        harness.receiver.enqueue(.init(status: 500, body: "once"))

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('m1', 'm@example.com')")
        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('m2', 'm@example.com')")
        _ = try await harness.receiver.waitForRequests(count: 3, timeout: .seconds(20))
        try await harness.waitUntil("both deliveries succeed") {
            try harness.succeededDeliveries() == 2
        }
        let (status, text, response) = try await get(base + "/metrics")

        #expect(status == 200)
        #expect(response.value(forHTTPHeaderField: "Content-Type") == "text/plain; version=0.0.4; charset=utf-8")
        let lines = Set(text.split(separator: "\n").map(String.init))
        #expect(lines.contains(#"action_triggers_events_captured_total{model="myapp.customer",signal="post_save"} 2"#), "\(text)")
        #expect(lines.contains(#"action_triggers_events_dispatched_total{model="myapp.customer",signal="post_save"} 2"#))
        #expect(lines.contains("action_triggers_deliveries_created_total 2"))
        #expect(lines.contains(#"action_triggers_delivery_attempts_total{target="webhook",outcome="succeeded"} 2"#))
        #expect(lines.contains(#"action_triggers_delivery_attempts_total{target="webhook",outcome="retry"} 1"#))
        #expect(lines.contains("action_triggers_delivery_attempt_duration_seconds_count 3"))
        // Only dispatches that took events count: one or two for the two inserts.
        let dispatchCount = lines.first { $0.hasPrefix("action_triggers_dispatch_duration_seconds_count ") }
        let dispatches = (dispatchCount?.split(separator: " ").last).flatMap { Int($0) } ?? 0
        #expect((1...2).contains(dispatches), "\(text)")
        #expect(lines.contains(#"action_triggers_build_info{version="0.1.0"} 1"#))
        #expect(lines.contains("action_triggers_listener_connected 1"))
        #expect(lines.contains("action_triggers_outbox_pending_events 0"))
        #expect(lines.contains("action_triggers_outbox_oldest_pending_age_seconds 0"))
        #expect(text.contains("action_triggers_notification_queue_usage_ratio "))
        let again = try await get(base + "/metrics").1
        #expect(again.contains(#"action_triggers_http_requests_total{route="/metrics",method="GET",status="200"} 1"#), "\(again)")

        // promtool, from Debian's prometheus package, checks the exposition format.
        let promtool = Process()
        promtool.executableURL = URL(fileURLWithPath: "/usr/bin/promtool")
        promtool.arguments = ["check", "metrics"]
        let input = Pipe()
        let output = Pipe()
        promtool.standardInput = input
        promtool.standardOutput = output
        promtool.standardError = output
        try promtool.run()
        input.fileHandleForWriting.write(Data(text.utf8))
        try input.fileHandleForWriting.close()
        promtool.waitUntilExit()
        let report = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(promtool.terminationStatus == 0, "promtool: \(report)")
    }

    @Test("unknown paths and methods get 404 and 405")
    func routingErrors() async throws {
        let harness = try Harness()
        let service = try await harness.startService()
        let base = try await service.httpBaseURL()

        let (missingStatus, missingBody, _) = try await get(base + "/nothing-here")
        let (methodStatus, methodBody, methodResponse) = try await get(base + "/healthz", method: "DELETE")

        #expect(missingStatus == 404)
        #expect(missingBody == #"{"detail": "Not found."}"#)
        #expect(methodStatus == 405)
        #expect(methodBody == #"{"detail": "Method \"DELETE\" not allowed."}"#)
        #expect(methodResponse.value(forHTTPHeaderField: "Allow") == "GET")
    }

    @Test("API paths need the token when one is set")
    func apiToken() async throws {
        let harness = try Harness()
        let service = try ServiceProcess(
            databaseURL: harness.database.url, settings: Harness.settings(allowing: [harness.receiver]),
            environment: ["ACTION_TRIGGERS_API_TOKEN": "s3cret-token"])
        try await service.waitUntilReady()
        let base = try await service.httpBaseURL()

        let (missingStatus, _, missingResponse) = try await get(base + "/api/action-triggers")
        let (wrongStatus, _, _) = try await get(base + "/api/action-triggers", headers: ["Authorization": "Bearer s3cret-tokeN"])
        let (rightStatus, _, _) = try await get(base + "/api/action-triggers", headers: ["Authorization": "Bearer s3cret-token"])
        let (healthStatus, _, _) = try await get(base + "/healthz")

        #expect(missingStatus == 401)
        #expect(missingResponse.value(forHTTPHeaderField: "WWW-Authenticate") == "Bearer")
        #expect(wrongStatus == 401)
        #expect(rightStatus == 200)
        #expect(healthStatus == 200)
        #expect(!service.log.contains("s3cret-token"))
        // Rejected requests are counted too, under the route they were sent to.
        let (_, metrics, _) = try await get(base + "/metrics")
        #expect(metrics.contains(#"action_triggers_http_requests_total{route="/api/action-triggers",method="GET",status="401"} 2"#),
                "\(metrics)")
        #expect(metrics.contains(#"action_triggers_http_requests_total{route="/api/action-triggers",method="GET",status="200"} 1"#))
        service.stop()
    }

    @Test("IPv6 listen address is logged bracketed")
    func ipv6ListenAddress() async throws {
        let harness = try Harness()
        let service = try ServiceProcess(
            databaseURL: harness.database.url, settings: Harness.settings(allowing: [harness.receiver]),
            environment: ["ACTION_TRIGGERS_LISTEN": "[::1]:0"])
        try await service.waitUntilReady()

        let base = try await service.httpBaseURL()
        // URLSession on Linux rejects IPv6 literals in URLs, so Python's urllib requests the URL.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try TestEnvironment.python())
        process.arguments = ["-c", "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).status)", base + "/healthz"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let status = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()

        #expect(base.hasPrefix("http://[::1]:"), "\(base)")
        #expect(status == "200\n")
        service.stop()
    }

    @Test("empty API token means no token")
    func emptyAPIToken() async throws {
        let harness = try Harness()
        let service = try ServiceProcess(
            databaseURL: harness.database.url, settings: Harness.settings(allowing: [harness.receiver]),
            environment: ["ACTION_TRIGGERS_API_TOKEN": ""])
        try await service.waitUntilReady()
        let base = try await service.httpBaseURL()

        let (withoutHeader, _, _) = try await get(base + "/api/action-triggers")
        let (emptyBearer, _, _) = try await get(base + "/api/action-triggers", headers: ["Authorization": "Bearer "])

        #expect(withoutHeader == 200)
        #expect(emptyBearer == 200)
        service.stop()
    }

    @Test("oversized body is 413 and counted")
    func oversizedBodyCounted() async throws {
        let harness = try Harness()
        let service = try await harness.startService()
        let base = try await service.httpBaseURL()

        let reply = try await send("POST", base + "/api/action-triggers", body: String(repeating: " ", count: 2 * 1024 * 1024))
        let (_, metrics, _) = try await get(base + "/metrics")

        #expect(reply.status == 413)
        #expect(metrics.contains(#"action_triggers_http_requests_total{route="/api/action-triggers",method="POST",status="413"} 1"#),
                "\(metrics)")
    }

    @Test("non-loopback address without a token is refused")
    func nonLoopbackWithoutToken() async throws {
        let harness = try Harness()
        let service = try ServiceProcess(
            databaseURL: harness.database.url, settings: "{}", environment: ["ACTION_TRIGGERS_LISTEN": "0.0.0.0:0"])

        try await harness.waitUntil("the service exits") { !service.isRunning }

        #expect(service.terminationStatus == 1)
        #expect(service.log.contains("refusing to listen on 0.0.0.0:0 without ACTION_TRIGGERS_API_TOKEN"))
        #expect(!service.log.contains("http server listening"))
    }
}
