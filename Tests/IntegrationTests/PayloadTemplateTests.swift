import Foundation
import PostgresClient
import Testing

/// Payload templates rendered at dispatch against real rows and foreign keys.
@Suite("Payload templates", .serialized)
struct PayloadTemplateIntegrationTests {
    private func saleConfig(_ harness: Harness, payload: String) -> String {
        """
        {
          "config_signals": [{"signal": "post_save"}],
          "content_types": [{"app_label": "myapp", "model_name": "Sale"}],
          "webhooks": [{"url": "\(harness.receiver.baseURL)/sale", "http_method": "POST"}],
          "active": true,
          "payload": \(payload)
        }
        """
    }

    @Test("example 3 arrives exact through the API", arguments: [
        "O'Brien & Sons <Ltd> \"VIP\"\nC:\\tmp",
        "Café 😀 🇯🇵 東京の顧客 Ωμέγα",
    ])
    func exampleThree(customerName: String) async throws {
        let harness = try Harness()
        let service = try await harness.startService()
        let base = try await service.httpBaseURL() + "/api/action-triggers"
        let payload = #"{"action": "new_sale", "customer_name": "{{ instance.customer.name }}", "product_name": "{{ instance.product.name }}"}"#
        let created = try await send("POST", base, body: saleConfig(harness, payload: payload))
        #expect(created.status == 201, "\(created.body)")
        // The stored payload keeps the order written, which jsonb alone would sort.
        #expect(created.body.contains(#""payload" : {"action":"new_sale","customer_name":"{{ instance.customer.name }}","product_name":"{{ instance.product.name }}"}"#),
                "\(created.body)")

        try harness.database.query("""
            WITH c AS (INSERT INTO myapp_customer (name, email) VALUES ($1, 'c@example.com') RETURNING id),
                 p AS (INSERT INTO myapp_product (name, description) VALUES ('Ünïcode "widget"', '') RETURNING id)
            INSERT INTO myapp_sale (customer_id, product_id, quantity) SELECT c.id, p.id, 3 FROM c, p
            """, [customerName])
        let request = try #require(try await harness.receiver.waitForRequests(count: 1, timeout: .seconds(20)).first)

        #expect(request.path == "/sale")
        let expected = #"{"action":"new_sale","customer_name":"#
            + jsonLiteral(customerName) + #","product_name":"Ünïcode \"widget\""}"#
        #expect(request.bodyText == expected)
        #expect(!request.bodyText.contains("&#"))
    }

    @Test("templated and plain configs of one table each deliver once")
    func templatedAndPlain() async throws {
        let harness = try Harness()
        try await harness.startService()
        try harness.createConfig(saleConfig(harness, payload: #"{"quantity": "{{ instance.quantity }}"}"#))
        try harness.createConfig("""
            {"config_signals": [{"signal": "post_save"}], "content_types": [{"app_label": "myapp", "model_name": "Sale"}],
             "webhooks": [{"url": "\(harness.receiver.baseURL)/plain", "http_method": "POST"}], "active": true}
            """)

        for quantity in 1...5 {
            try harness.database.query("""
                WITH p AS (INSERT INTO myapp_product (name, description) VALUES ('lamp', '') RETURNING id)
                INSERT INTO myapp_sale (customer_id, product_id, quantity) SELECT NULL, p.id, $1 FROM p
                """, [String(quantity)])
        }
        _ = try await harness.receiver.waitForRequests(count: 10, timeout: .seconds(20))
        try await Task.sleep(for: .milliseconds(300))

        #expect(harness.requests(to: "/sale").map(\.bodyText).sorted() == (1...5).map { #"{"quantity":\#($0)}"# })
        #expect(harness.requests(to: "/plain").count == 5)
        #expect(try harness.database.query(
            "SELECT count(*) AS n FROM action_triggers.event WHERE dispatched_at IS NULL").singleRow().int("n") == 0)
    }

    @Test("NULL foreign key gives null and still delivers")
    func nullForeignKey() async throws {
        let harness = try Harness()
        try await harness.startService()
        try harness.createConfig(saleConfig(harness, payload: #"{"customer_name": "{{ instance.customer.name }}", "product": "{{ instance.product.name|upper }}"}"#))

        try harness.database.query("""
            WITH p AS (INSERT INTO myapp_product (name, description) VALUES ('lamp', '') RETURNING id)
            INSERT INTO myapp_sale (customer_id, product_id, quantity) SELECT NULL, p.id, 1 FROM p
            """)
        let request = try #require(try await harness.receiver.waitForRequests(count: 1, timeout: .seconds(20)).first)

        #expect(request.bodyText == #"{"customer_name":null,"product":"LAMP"}"#)
    }

    @Test("typed and interpolated placeholders, old row and event fields")
    func typedAndText() async throws {
        let harness = try Harness()
        try await harness.startService()
        try harness.createConfig(saleConfig(harness, payload: """
            {"qty": "{{ instance.quantity }}", "label": "qty={{ instance.quantity }}", "was": "{{ old.quantity }}",
             "created": "{{ event.created }}", "model": "{{ event.model }}", "signal": "{{ event.signal }}",
             "customer": "{{ instance.customer }}"}
            """))

        try harness.database.query("""
            WITH c AS (INSERT INTO myapp_customer (name, email) VALUES ('Ada', 'ada@example.com') RETURNING id),
                 p AS (INSERT INTO myapp_product (name, description) VALUES ('lamp', '') RETURNING id)
            INSERT INTO myapp_sale (customer_id, product_id, quantity) SELECT c.id, p.id, 2 FROM c, p
            """)
        try harness.database.query("UPDATE myapp_sale SET quantity = 5")
        let requests = try await harness.receiver.waitForRequests(count: 2, timeout: .seconds(20))
            .sorted { eventID(of: $0) < eventID(of: $1) }

        let customer = #"{"id":1,"name":"Ada","email":"ada@example.com"}"#
        #expect(requests.map(\.bodyText) == [
            #"{"qty":2,"label":"qty=2","was":null,"created":true,"model":"myapp.sale","signal":"post_save","customer":"# + customer + "}",
            #"{"qty":5,"label":"qty=5","was":2,"created":false,"model":"myapp.sale","signal":"post_save","customer":"# + customer + "}",
        ])
    }

    @Test("unknown relation, column or filter is a 400 naming the path", arguments: [
        ("{{ instance.custmer.name }}", "instance.custmer.name"),
        ("{{ instance.customer.nam }}", "instance.customer.nam"),
        ("{{ instance.customer.name|shout }}", "shout"),
        ("{{ myapp.utils.get_token }}", "myapp.utils.get_token"),
    ])
    func invalidPaths(placeholder: String, named: String) async throws {
        let harness = try Harness()
        let service = try await harness.startService()
        let base = try await service.httpBaseURL() + "/api/action-triggers"

        let reply = try await send("POST", base, body: saleConfig(harness, payload: #"{"customer_name": ""# + placeholder + #""}"#))

        #expect(reply.status == 400)
        let errors = try #require(try reply.json() as? [String: [String]])
        #expect(Array(errors.keys) == ["payload.customer_name"])
        #expect(errors["payload.customer_name"]?.first?.contains(named) == true, "\(reply.body)")
        #expect(try harness.database.query("SELECT count(*) AS n FROM action_triggers.config").singleRow().int("n") == 0)
    }

    @Test("plain SQL payloads are checked like create_config", arguments: [
        (#"{"a": "{{ instance.nope }}"}"#, "payload.a", "path instance.nope: model myapp.sale has no column or relation nope"),
        (#"{"a": 1, "a": 2}"#, "payload.a", "is a repeated key: an object in a payload must not repeat a key"),
        (#"{"b": {"x": 1, "x": 1}}"#, "payload.b.x", "is a repeated key: an object in a payload must not repeat a key"),
        (#"{"t": "{% if x %}y{% endif %}"}"#, "payload.t",
         #""{% if x %}y{% endif %}" has a Django template tag ({% ... %}), which payloads do not support: use {{ path|filter }} placeholders"#),
        (#"{"q": "{{ instance.quantity.name }}"}"#, "payload.q",
         "path instance.quantity.name: quantity of model myapp.sale is a column, not a relation (a foreign key), so nothing can follow it"),
    ])
    func plainSQLPayload(payload: String, path: String, message: String) async throws {
        let harness = try Harness()
        _ = try MigrationHelper.migrate(try harness.database.connect())
        let id = try harness.createConfig(saleConfig(harness, payload: #"{"fixed": 1}"#))

        do {
            try harness.database.query("UPDATE action_triggers.config SET payload = $1::json WHERE id = $2", [payload, String(id)])
            Issue.record("the update was accepted")
        } catch let error as PostgresError {
            #expect(error.sqlState == "22023")
            let detail = try #require(error.detail)
            let errors = try #require(try JSONSerialization.jsonObject(with: Data(detail.utf8)) as? [String: [String]])
            #expect(errors[path] == [message], "\(detail)")
        }
        let stored = try harness.database.query("SELECT payload::text AS payload FROM action_triggers.config").singleRow()
        #expect(stored["payload"] == #"{"fixed": 1}"#)
    }

    @Test("create_config rejects a payload argument that differs or repeats keys")
    func payloadArgument() throws {
        let harness = try Harness()
        _ = try MigrationHelper.migrate(try harness.database.connect())
        let body = saleConfig(harness, payload: #"{"a": "x"}"#)
        for (argument, path) in [(#"{"b": "x"}"#, "payload"), (#"{"a": "x", "a": "x"}"#, "payload.a"), ("[1]", "payload")] {
            do {
                try harness.database.query("SELECT action_triggers.create_config($1::jsonb, $2::json)", [body, argument])
                Issue.record("create_config accepted \(argument)")
            } catch let error as PostgresError {
                #expect(error.sqlState == "22023")
                #expect(error.detail?.contains("\"\(path)\"") == true, "\(error.detail ?? "")")
            }
        }
        #expect(try harness.database.query("SELECT count(*) AS n FROM action_triggers.config").singleRow().int("n") == 0)
    }

    @Test("malformed stored payload fails only its own config")
    func malformedStoredPayload() async throws {
        let harness = try Harness()
        try await harness.startService()
        let broken = try harness.createConfig(saleConfig(harness, payload: #"{"a": "{{ instance.quantity }}"}"#))
        try harness.createConfig(harness.exampleOneConfig())
        // Only a superuser can write past the check, as a restored or hand-edited database might.
        try harness.database.query("ALTER TABLE action_triggers.config DISABLE TRIGGER check_config_payload")
        try harness.database.query(
            "UPDATE action_triggers.config SET payload = '{\"a\": 1, \"a\": 2}' WHERE id = $1", [String(broken)])

        try harness.database.query("""
            WITH c AS (INSERT INTO myapp_customer (name, email) VALUES ('Ada', 'ada@example.com') RETURNING id),
                 p AS (INSERT INTO myapp_product (name, description) VALUES ('lamp', '') RETURNING id)
            INSERT INTO myapp_sale (customer_id, product_id, quantity) SELECT c.id, p.id, 1 FROM c, p
            """)
        _ = try await harness.receiver.waitForRequests(count: 1, timeout: .seconds(20))

        #expect(harness.requests(to: "/customer").count == 1)
        try await harness.waitUntil("the broken config's delivery is dead") {
            try harness.database.query(
                "SELECT status FROM action_triggers.delivery WHERE config_id = $1", [String(broken)]).rows.first?["status"] == "dead"
        }
        let error = try harness.database.query(
            "SELECT last_error FROM action_triggers.delivery WHERE config_id = $1", [String(broken)]).singleRow()
        #expect(error["last_error"]?.contains("payload template of config \(broken) is invalid") == true)
    }

    @Test("NUL character is a 400 naming the field")
    func nulCharacter() async throws {
        let harness = try Harness()
        let service = try await harness.startService()
        let base = try await service.httpBaseURL() + "/api/action-triggers"

        let reply = try await send("POST", base, body: saleConfig(harness, payload: #"{"x": "a\u0000b"}"#))

        #expect(reply.status == 400)
        #expect(reply.body == #"{"payload.x": ["must not contain the NUL character (\\u0000), which PostgreSQL cannot store"]}"#)
    }

    /// Columns of every common type, with the values that break naive encoders.
    static let columnTypes: [(type: String, value: String)] = [
        ("smallint", "-32768"), ("integer", "2147483647"), ("bigint", "9223372036854775807"),
        ("numeric", "123456789012345678901234567890.000000000000000001"), ("numeric", "'NaN'"),
        ("real", "'Infinity'"), ("real", "1.1"), ("double precision", "'-Infinity'"), ("double precision", "0.1"),
        ("boolean", "true"), ("text", "E'quote \" back\\\\slash \\n newline O''Brien \\u00e9 😀'"),
        ("varchar(10)", "'short'"), ("char(5)", "'ab'"), ("uuid", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"),
        ("json", #"'{"b": 1, "a": [1.50, null]}'"#), ("jsonb", #"'{"b": 1, "a": [1.50, null]}'"#),
        ("bytea", "'\\x00ff10'"), ("date", "'2026-12-04'"), ("time", "'23:59:59.999999'"),
        ("timestamp", "'2026-12-04 10:11:12.123456'"), ("timestamptz", "'2026-12-04 10:11:12.5+05:30'"),
        ("timestamptz", "'infinity'"), ("interval", "'1 year 2 months 3 days 04:05:06.7'"),
        ("integer[]", "'{1,NULL,3}'"), ("text[]", #"'{"a,b","c\"d"}'"#), ("mood", "'happy'"), ("integer", "NULL"),
    ]

    @Test("every column type arrives as to_jsonb shows it")
    func columnTypesExact() async throws {
        let harness = try Harness()
        let columns = Self.columnTypes.enumerated().map { "c\($0.offset) \($0.element.type)" }
        try harness.database.execute("""
            CREATE TYPE mood AS ENUM ('sad', 'happy');
            CREATE TABLE myapp_typed (id bigserial PRIMARY KEY, \(columns.joined(separator: ", ")));
            """)
        try await harness.startService()
        let placeholders = Self.columnTypes.indices.map { #""c\#($0)": "{{ instance.c\#($0) }}""# }
        for (path, payload) in [("/default", nil), ("/typed", "{" + placeholders.joined(separator: ", ") + "}")] {
            try harness.createConfig("""
                {
                  "config_signals": [{"signal": "post_save"}],
                  "content_types": [{"app_label": "myapp", "model_name": "Typed"}],
                  "webhooks": [{"url": "\(harness.receiver.baseURL)\(path)", "http_method": "POST"}],
                  "active": true\(payload.map { ", \"payload\": " + $0 } ?? "")
                }
                """)
        }

        let values = Self.columnTypes.map(\.value).joined(separator: ", ")
        try harness.database.query("INSERT INTO myapp_typed VALUES (DEFAULT, \(values))")
        let requests = try await harness.receiver.waitForRequests(count: 2, timeout: .seconds(20))

        let connection = try harness.database.connect()
        try connection.execute("SET TimeZone = 'UTC'")
        let expected = try connection.query("SELECT to_jsonb(t)::text AS row FROM myapp_typed t").singleRow().string("row")
        for request in requests {
            let body = request.bodyText
            for index in Self.columnTypes.indices {
                let same = try connection.query(
                    "SELECT ($1::jsonb -> $3) = ($2::jsonb -> $3) AND ($2::jsonb ? $3) AS same", [expected, body, "c\(index)"])
                    .singleRow().bool("same")
                #expect(same, "\(request.path) column c\(index) \(Self.columnTypes[index].type): \(body) vs \(expected)")
            }
        }
        #expect(Set(requests.map(\.path)) == ["/default", "/typed"])
    }
}

/// Returns a string as a JSON literal, escaped as the service escapes it.
private func jsonLiteral(_ text: String) -> String {
    var output = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": output += "\\\""
        case "\\": output += "\\\\"
        case "\n": output += "\\n"
        default: output.unicodeScalars.append(scalar)
        }
    }
    return output + "\""
}
