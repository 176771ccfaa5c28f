import Foundation
import PostgresClient
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Webhook TLS: certificates are always verified, against a webhook's own CA bundle when it names one.
@Suite("Webhook TLS", .serialized)
struct TLSTests {
    /// A one-thread HTTPS server that records each request's path in a file and responds 200.
    static let serverScript = """
        import http.server, ssl, sys
        port, certificate, key, record = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with open(record, "a") as output:
                    output.write(self.path + "\\n")
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            def log_message(self, *arguments):
                pass
        server = http.server.HTTPServer(("127.0.0.1", port), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        server.serve_forever()
        """

    @Test("a webhook's CA bundle verifies a private certificate; without it nothing is sent")
    func caBundle() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let certificate = folder.appendingPathComponent("certificate.pem").path
        let key = folder.appendingPathComponent("key.pem").path
        let record = folder.appendingPathComponent("requests.txt").path
        try run("/usr/bin/openssl", [
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", certificate, "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ])
        let placeholder = try TestReceiver()
        let port = placeholder.port
        placeholder.stop()
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        server.arguments = ["-c", Self.serverScript, String(port), certificate, key, record]
        // Inherited pipes would keep `swift test` waiting for the server's output to end.
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        // SIGKILL, because the test process may pass on an ignored SIGTERM.
        defer { kill(server.processIdentifier, SIGKILL) }
        try await Task.sleep(for: .milliseconds(500))

        let harness = try Harness()
        let settings = """
            {"whitelisted_webhook_endpoint_patterns": ["https://127\\\\.0\\\\.0\\\\.1:\(port)/"],
             "retry": {"max_attempts": 2, "base_delay_secs": 0.2, "max_delay_secs": 1, "jitter": 0}}
            """
        try await harness.startService(settings: settings)
        for (path, bundle) in [("/trusted", #", "ca_bundle": "\#(certificate)""#), ("/untrusted", "")] {
            try harness.createConfig("""
                {"config_signals": [{"signal": "post_save"}], "content_types": [{"app_label": "myapp", "model_name": "Customer"}],
                 "webhooks": [{"url": "https://127.0.0.1:\(port)\(path)", "http_method": "POST"\(bundle)}], "active": true}
                """)
        }

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('Ada', 'ada@example.com')")
        try await harness.waitUntil("both deliveries finish") {
            try harness.database.query(
                "SELECT count(*) AS n FROM action_triggers.delivery WHERE status IN ('succeeded', 'dead')").singleRow().int("n") == 2
        }

        let statuses = try harness.database.query(
            "SELECT url, status, last_error FROM action_triggers.delivery ORDER BY url").rows
        #expect(statuses.map { $0["status"] } == ["succeeded", "dead"])
        #expect(statuses.last?["last_error"]?.contains("certificate") == true, "\(statuses.last?["last_error"] ?? "")")
        let received = try String(contentsOfFile: record, encoding: .utf8)
        #expect(received == "/trusted\n")
    }

    private func run(_ executable: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "\(executable) \(arguments.joined(separator: " ")) failed")
    }
}
