import Foundation
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The REST API for configs against a running service and a real database.
@Suite("Config REST API", .serialized)
struct ConfigAPITests {
    private func start() async throws -> (Harness, String) {
        let harness = try Harness()
        let service = try await harness.startService()
        return (harness, try await service.httpBaseURL() + "/api/action-triggers")
    }

    @Test("create, read, list, replace, patch and delete")
    func lifecycle() async throws {
        let (harness, api) = try await start()

        let created = try await send("POST", api, body: harness.exampleOneConfig())
        #expect(created.status == 201, "\(created.body)")
        let object = try #require(try created.json() as? [String: Any])
        let id = try #require(object["id"] as? Int)
        #expect(created.response.value(forHTTPHeaderField: "Location") == "/api/action-triggers/\(id)")
        #expect((object["content_types"] as? [[String: String]])?.first?["model_name"] == "Customer")

        let shown = try await send("GET", "\(api)/\(id)/")
        #expect(shown.status == 200)
        #expect(shown.body == created.body)
        let listed = try await send("GET", api + "/")
        #expect((try listed.json() as? [[String: Any]])?.compactMap { $0["id"] as? Int } == [id])

        let replaced = try await send("PUT", "\(api)/\(id)", body: harness.exampleOneConfig(path: "/replaced"))
        #expect(replaced.status == 200, "\(replaced.body)")
        #expect(replaced.body.contains("/replaced"))

        let patched = try await send("PATCH", "\(api)/\(id)", body: #"{"active": false}"#)
        #expect(patched.status == 200, "\(patched.body)")
        #expect((try patched.json() as? [String: Any])?["active"] as? Bool == false)
        #expect(patched.body.contains("/replaced"))
        let triggers = try harness.database.query(
            "SELECT count(*) AS n FROM pg_trigger WHERE tgrelid = 'myapp_customer'::regclass AND NOT tgisinternal")
        #expect(try triggers.singleRow().int("n") == 0)

        let deleted = try await send("DELETE", "\(api)/\(id)")
        #expect(deleted.status == 204)
        #expect(deleted.body.isEmpty)
        #expect(try await send("GET", "\(api)/\(id)").status == 404)
        #expect(try await send("DELETE", "\(api)/\(id)").status == 404)
    }

    @Test("config made through the API delivers")
    func apiConfigDelivers() async throws {
        let (harness, api) = try await start()
        #expect(try await send("POST", api, body: harness.exampleOneConfig()).status == 201)

        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('via api', 'a@example.com')")
        let requests = try await harness.receiver.waitForRequests(count: 1, timeout: .seconds(20))

        #expect(try jsonObject(requests[0])["name"] as? String == "via api")
    }

    @Test("malformed JSON names line and column")
    func malformedJSON() async throws {
        let (harness, api) = try await start()
        // The shape of the spec's example 3 as printed: no comma after content_types.
        let body = """
            {
              "config_signals": [
                {"signal": "post_save"}
              ],
              "content_types": [
                {
                  "app_label": "myapp",
                  "model_name": "Sale"
                }
              ]
              "webhooks": [
                {"url": "\(harness.receiver.baseURL)/sale", "http_method": "POST"}
              ],
              "active": true
            }
            """

        let reply = try await send("POST", api, body: body)

        #expect(reply.status == 400)
        #expect(reply.body == #"{"detail": "JSON parse error: line 11, column 3: unexpected '\"', expected ',' or '}' after an object member"}"#)
        #expect(try harness.database.query("SELECT count(*) AS n FROM action_triggers.config").singleRow().int("n") == 0)
    }

    @Test("invalid fields are 400 with paths, and nothing is saved")
    func invalidFields() async throws {
        let (harness, api) = try await start()
        let forbidden = try TestReceiver()
        let body = """
            {"config_signals": [{"signal": "saved"}],
             "content_types": [{"app_label": "myapp", "model": "Customer"}],
             "webhooks": [{"url": "\(forbidden.baseURL)/x", "http_method": "POST", "timeout_secs": -1}],
             "active": "yes"}
            """

        let reply = try await send("POST", api, body: body)

        #expect(reply.status == 400)
        let errors = try #require(try reply.json() as? [String: [String]])
        #expect(Set(errors.keys) == ["config_signals[0].signal", "webhooks[0].url", "webhooks[0].timeout_secs", "active"])
        #expect(errors["webhooks[0].url"]?.first?.contains("whitelisted_webhook_endpoint_patterns") == true)
        #expect(try harness.database.query("SELECT count(*) AS n FROM action_triggers.config").singleRow().int("n") == 0)
        #expect(forbidden.connectionCount == 0)
    }

    @Test("table the service role does not own is 409")
    func missingTableOwnership() async throws {
        let harness = try Harness()
        let database = harness.database
        let role = "owner_" + database.name
        try database.execute("""
            CREATE ROLE \(role) LOGIN;
            GRANT CREATE ON DATABASE \(database.name) TO \(role);
            ALTER TABLE myapp_customer OWNER TO \(role);
            GRANT SELECT ON myapp_product TO \(role);
            """)
        defer { _ = try? database.execute("DROP OWNED BY \(role); DROP ROLE \(role)") }
        #expect(database.url.contains("//postgres@"), "the test expects the admin URL to name the user postgres")
        let service = try ServiceProcess(
            databaseURL: database.url.replacingOccurrences(of: "//postgres@", with: "//\(role)@"),
            settings: Harness.settings(allowing: [harness.receiver]))
        defer { service.stop(signal: SIGKILL) }
        try await service.waitUntilReady()
        let api = try await service.httpBaseURL() + "/api/action-triggers"
        func config(model: String, active: Bool) -> String {
            """
            {"config_signals": [{"signal": "post_save"}],
             "content_types": [{"app_label": "myapp", "model_name": "\(model)"}],
             "webhooks": [{"url": "\(harness.receiver.baseURL)/hook", "http_method": "POST"}],
             "active": \(active)}
            """
        }

        // Creating a trigger on a table owned by another role.
        let created = try await send("POST", api, body: config(model: "Product", active: true))
        #expect(created.status == 409)
        #expect(created.body.contains("permission denied for table myapp_product"), "\(created.body)")
        #expect(created.body.contains("The role in DATABASE_URL must own every table that a config names"))
        #expect(try database.query("SELECT count(*) AS n FROM action_triggers.config").singleRow().int("n") == 0)

        // Dropping the trigger after the table changed owner.
        let owned = try await send("POST", api, body: config(model: "Customer", active: true))
        #expect(owned.status == 201, "\(owned.body)")
        let id = try #require(try owned.json() as? [String: Any])["id"] as? Int
        try database.execute("ALTER TABLE myapp_customer OWNER TO postgres")
        for (method, body) in [("PATCH", #"{"active": false}"#), ("PUT", config(model: "Customer", active: false)), ("DELETE", "")] {
            let reply = try await send(method, "\(api)/\(try #require(id))", body: body.isEmpty ? nil : body)
            #expect(reply.status == 409, "\(method): \(reply.body)")
            #expect(reply.body.contains("must be owner of"), "\(method): \(reply.body)")
        }
        let stored = try database.query("SELECT active FROM action_triggers.config").singleRow()
        #expect(stored["active"] == "t")
        #expect(service.log.contains("msg=\"API request failed: database privilege missing\""))
    }

    @Test("schemathesis finds no server error or schema mismatch")
    func schemathesis() async throws {
        guard let tool = ProcessInfo.processInfo.environment["ACTION_TRIGGERS_TEST_SCHEMATHESIS"], !tool.isEmpty else {
            Issue.record("ACTION_TRIGGERS_TEST_SCHEMATHESIS is not set: run the tests with scripts/test, which installs schemathesis")
            return
        }
        let harness = try Harness()
        let service = try await harness.startService()
        let base = try await service.httpBaseURL()
        try harness.createConfig(harness.exampleOneConfig())

        // Every check except positive_data_acceptance: whether a schema-valid body is
        // accepted depends on the database (the model must have a table).
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = [
            "run", base + "/api/action-triggers/openapi.json", "--url", base,
            "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                + "response_schema_conformance,response_headers_conformance,negative_data_rejection",
            "--max-examples", "50", "--seed", "1",
        ]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let report = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()

        #expect(process.terminationStatus == 0, "schemathesis:\n\(report)")
        #expect(report.contains("passed"))
        #expect(!service.log.contains("level=error"), "service log:\n\(service.log)")
    }

    /// One invalid body per validation rule, with the field path its error must name.
    static let invalidBodies: [(body: String, path: String)] = {
        let signals = #""config_signals": [{"signal": "post_save"}]"#
        let types = #""content_types": [{"app_label": "myapp", "model_name": "Customer"}]"#
        let hook = #""webhooks": [{"url": "http://127.0.0.1:9/x", "http_method": "POST"}]"#
        func body(_ parts: String...) -> String { "{" + parts.joined(separator: ", ") + "}" }
        func webhook(_ fields: String) -> String { #""webhooks": [{"# + fields + "}]" }
        return [
            (body(types, hook, #""active": true"#), "config_signals"),
            (body(#""config_signals": []"#, types, hook, #""active": true"#), "config_signals"),
            (body(#""config_signals": [{"signal": "post_update"}]"#, types, hook, #""active": true"#), "config_signals[0].signal"),
            (body(#""config_signals": [{"signal": 1}]"#, types, hook, #""active": true"#), "config_signals[0].signal"),
            (body(#""config_signals": ["post_save"]"#, types, hook, #""active": true"#), "config_signals[0]"),
            (body(#""config_signals": {"signal": "post_save"}"#, types, hook, #""active": true"#), "config_signals"),
            (body(signals, hook, #""active": true"#), "content_types"),
            (body(signals, #""content_types": []"#, hook, #""active": true"#), "content_types"),
            (body(signals, #""content_types": [{"app_label": "myapp", "model_name": "Ghost"}]"#, hook, #""active": true"#), "content_types[0]"),
            (body(signals, #""content_types": [{"app_label": "", "model_name": "Customer"}]"#, hook, #""active": true"#), "content_types[0].app_label"),
            (body(signals, #""content_types": [{"app_label": "myapp", "model_name": null}]"#, hook, #""active": true"#), "content_types[0].model_name"),
            (body(signals, #""content_types": ["myapp.customer"]"#, hook, #""active": true"#), "content_types[0]"),
            (body(signals, types, webhook(#""url": "http://127.0.0.1:9/x", "http_method": "FETCH""#), #""active": true"#), "webhooks[0].http_method"),
            (body(signals, types, webhook(#""url": "http://127.0.0.1:9/x", "http_method": "post""#), #""active": true"#), "webhooks[0].http_method"),
            (body(signals, types, webhook(#""url": "http://127.0.0.1:9/x", "http_method": "POST", "timeout_secs": -1"#), #""active": true"#), "webhooks[0].timeout_secs"),
            (body(signals, types, webhook(#""url": "http://127.0.0.1:9/x", "http_method": "POST", "timeout_secs": "10""#), #""active": true"#), "webhooks[0].timeout_secs"),
            (body(signals, types, webhook(#""url": "http://127.0.0.1:9/x\n", "http_method": "POST""#), #""active": true"#), "webhooks[0].url"),
            (body(signals, types, webhook(#""url": "ftp://127.0.0.1/x", "http_method": "POST""#), #""active": true"#), "webhooks[0].url"),
            (body(signals, types, webhook(#""url": 5, "http_method": "POST""#), #""active": true"#), "webhooks[0].url"),
            (body(signals, types, webhook(#""http_method": "POST""#), #""active": true"#), "webhooks[0].url"),
            (body(signals, types, webhook(#""url": "http://127.0.0.1:9/x", "http_method": "POST", "headers": "Bearer x""#), #""active": true"#), "webhooks[0].headers"),
            (body(signals, types, webhook(#""url": "http://127.0.0.1:9/x", "http_method": "POST", "headers": {"X-Id": 7}"#), #""active": true"#), "webhooks[0].headers.X-Id"),
            (body(signals, types, webhook(#""url": "http://127.0.0.1:9/x", "http_method": "POST", "verb": "POST""#), #""active": true"#), "webhooks[0].verb"),
            (body(signals, types, #""webhooks": {"url": "http://127.0.0.1:9/x"}"#, #""active": true"#), "webhooks"),
            (body(signals, types, #""msg_broker_queues": [{"name": "rabbit"}]"#, #""active": true"#), "msg_broker_queues[0].name"),
            (body(signals, types, #""msg_broker_queues": [{"name": "rabbit", "parameters": "x"}]"#, #""active": true"#), "msg_broker_queues[0].parameters"),
            (body(signals, types, hook), "active"),
            (body(signals, types, hook, #""active": "true""#), "active"),
            (body(signals, types, hook, #""active": null"#), "active"),
            (body(signals, types, hook, #""active": true"#, #""payload": "text""#), "payload"),
            (body(signals, types, hook, #""active": true"#, #""colour": "blue""#), "colour"),
            ("[]", "non_field_errors"),
        ]
    }()

    @Test("every invalid body is a 400 naming its field")
    func invalidBodyTable() async throws {
        let (harness, api) = try await start()
        #expect(Self.invalidBodies.count >= 30)

        for (body, path) in Self.invalidBodies {
            let reply = try await send("POST", api, body: body)
            #expect(reply.status == 400, "\(body) → \(reply.status) \(reply.body)")
            let errors = try? reply.json() as? [String: [String]]
            #expect(errors?[path] != nil, "\(body) → \(reply.body), expected a message for \(path)")
        }
        for table in ["config", "config_signal", "config_content_type", "webhook", "msg_broker_queue"] {
            let count = try harness.database.query("SELECT count(*) AS n FROM action_triggers.\(table)").singleRow().int("n")
            #expect(count == 0, "rows in action_triggers.\(table)")
        }
    }

    @Test("non-object body names its type", arguments: [
        ("\"x\"", "string"), ("5", "number"), ("null", "null"), ("true", "boolean"), ("[1]", "array"),
    ])
    func nonObjectBody(body: String, typeName: String) async throws {
        let (harness, api) = try await start()
        let id = try harness.createConfig(harness.exampleOneConfig())
        let expected = #"{"non_field_errors": ["the config must be a JSON object (got \#(typeName))"]}"#

        for (method, url) in [("POST", api), ("PUT", "\(api)/\(id)"), ("PATCH", "\(api)/\(id)")] {
            let reply = try await send(method, url, body: body)
            #expect(reply.status == 400, "\(method)")
            #expect(reply.body == expected, "\(method): \(reply.body)")
        }
        let stored = try harness.database.query("SELECT action_triggers.get_config(id)::text AS config FROM action_triggers.config")
        #expect(stored.rows.count == 1)
    }

    @Test("wrong media type, size and ids")
    func requestErrors() async throws {
        let (harness, api) = try await start()

        let plain = try await send("POST", api, body: harness.exampleOneConfig(), contentType: "text/plain")
        #expect(plain.status == 415)
        #expect(plain.body.hasPrefix(#"{"detail": "Unsupported media type"#))

        let huge = try await send("POST", api, body: "[" + String(repeating: "1,", count: 600_000) + "1]")
        #expect(huge.status == 413)

        for path in ["/999999", "/abc", "/-1", "/0"] {
            #expect(try await send("GET", api + path).status == 404, "GET \(path)")
        }
        let document = try await send("GET", api + "/openapi.json")
        #expect(document.status == 200)
        #expect((try document.json() as? [String: Any])?["openapi"] as? String == "3.0.3")
        let nul = try await send("POST", api, body: #"{"config_signals": [{"signal": "a\u0000b"}], "content_types": [], "active": true}"#)
        #expect(nul.status == 400, "\(nul.body)")

        let wrongMethod = try await send("POST", api + "/1", body: "{}")
        #expect(wrongMethod.status == 405)
        #expect(wrongMethod.response.value(forHTTPHeaderField: "Allow") == "DELETE, GET, PATCH, PUT")
    }
}
