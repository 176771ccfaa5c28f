import ActionTriggersService
import Foundation
import PostgresClient
import Testing

/// Config changes through the SQL functions and plain SQL, and their checks.
@Suite("Configs", .serialized)
struct ConfigTests {
    @Test("deactivating and deleting stop deliveries at once")
    func deactivateAndDelete() async throws {
        let harness = try Harness()
        try await harness.startService()
        let configID = try harness.createConfig(harness.exampleOneConfig())
        try harness.createConfig(harness.markerConfig())
        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('active', 'a@example.com')")
        _ = try await harness.receiver.waitForRequests(count: 1, timeout: .seconds(20))

        try harness.database.query(
            "SELECT action_triggers.update_config($1, $2::jsonb)", [String(configID), harness.exampleOneConfig(active: false)])
        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('inactive', 'i@example.com')")
        try await harness.insertMarkerAndWait(count: 1)
        #expect(harness.requests(to: "/customer").count == 1)

        try harness.database.query(
            "SELECT action_triggers.update_config($1, $2::jsonb)", [String(configID), harness.exampleOneConfig(active: true)])
        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('again', 'g@example.com')")
        try await harness.insertMarkerAndWait(count: 2)
        #expect(try harness.requests(to: "/customer").map { try jsonObject($0)["name"] as? String } == ["active", "again"])

        try harness.database.query("SELECT action_triggers.delete_config($1)", [String(configID)])
        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('deleted', 'd@example.com')")
        try await harness.insertMarkerAndWait(count: 3)
        #expect(harness.requests(to: "/customer").count == 2)
        let triggers = try harness.database.query(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'myapp_customer'::regclass AND NOT tgisinternal")
        #expect(triggers.rows.isEmpty)
    }

    @Test("capture triggers follow plain SQL changes")
    func triggersFollowPlainSQL() throws {
        let harness = try Harness()
        try harness.database.query("SELECT 1")
        let connection = try harness.database.connect()
        try connection.execute("SET client_min_messages = warning")
        try MigrationHelper.migrate(connection)
        let configID = try harness.createConfig(harness.exampleOneConfig())
        let triggerNames = "SELECT string_agg(tgname, ',' ORDER BY tgname) AS names FROM pg_trigger WHERE tgrelid = 'myapp_customer'::regclass AND NOT tgisinternal"

        #expect(try connection.query(triggerNames).singleRow()["names"] == "action_triggers_post_delete,action_triggers_post_save")

        try connection.query("UPDATE action_triggers.config SET active = false WHERE id = $1", [String(configID)])
        #expect(try connection.query(triggerNames).singleRow()["names"] == nil)

        try connection.query("UPDATE action_triggers.config SET active = true WHERE id = $1", [String(configID)])
        try connection.query("DELETE FROM action_triggers.config_signal WHERE signal = 'post_delete'")
        #expect(try connection.query(triggerNames).singleRow()["names"] == "action_triggers_post_save")

        try connection.query("INSERT INTO action_triggers.config_signal (config_id, position, signal) VALUES ($1, 1, 'pre_delete')", [String(configID)])
        #expect(try connection.query(triggerNames).singleRow()["names"] == "action_triggers_post_save,action_triggers_pre_delete")

        try connection.query("DELETE FROM action_triggers.config")
        #expect(try connection.query(triggerNames).singleRow()["names"] == nil)
    }

    @Test("recreated table gets its triggers back")
    func recreatedTable() async throws {
        let harness = try Harness()
        let settings = Harness.settings(allowing: [harness.receiver], pollInterval: 0.2)
        let service = try await harness.startService(settings: settings)
        try harness.createConfig(harness.exampleOneConfig())
        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('before', 'b@example.com')")
        _ = try await harness.receiver.waitForRequests(count: 1, timeout: .seconds(20))

        try harness.database.query("DROP TABLE myapp_customer CASCADE")
        try await service.waitForLog("msg=\"configured table is missing\"")
        try harness.createConfig(harness.markerConfig())
        try harness.database.query("CREATE TABLE myapp_customer (id bigserial PRIMARY KEY, name text NOT NULL, email text NOT NULL)")
        // Steady traffic on another table keeps the dispatcher busy; the repair must run anyway.
        let deadline = ContinuousClock.now + .seconds(15)
        while !service.log.contains("msg=\"capture triggers are in sync again\"") && ContinuousClock.now < deadline {
            try harness.database.query("INSERT INTO myapp_product (name, description) VALUES ('traffic', '')")
            try await Task.sleep(for: .milliseconds(50))
        }
        try await service.waitForLog("msg=\"capture triggers are in sync again\"", timeout: .seconds(1))
        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('after', 'a@example.com')")
        try await harness.waitUntil("the customer inserted after the repair arrives") {
            harness.requests(to: "/customer").count >= 2
        }

        let customers = harness.requests(to: "/customer")
        #expect(try customers.map { try jsonObject($0)["name"] as? String } == ["before", "after"])
        #expect(service.log.contains("table public.myapp_customer of model myapp.Customer does not exist"))
    }

    @Test("stale trigger arguments are repaired")
    func staleTriggerArguments() throws {
        let harness = try Harness()
        let connection = try harness.database.connect()
        try MigrationHelper.migrate(connection)
        try harness.createConfig(harness.exampleOneConfig())
        let arguments = "SELECT encode(tgargs, 'escape') AS args FROM pg_trigger WHERE tgrelid = 'myapp_customer'::regclass AND tgname = 'action_triggers_post_save'"
        let correct = try connection.query(arguments).singleRow().string("args")

        // A restored dump keeps the old database's oid in the trigger's arguments.
        try connection.execute("""
            DROP TRIGGER action_triggers_post_save ON myapp_customer;
            CREATE TRIGGER action_triggers_post_save AFTER INSERT OR UPDATE ON myapp_customer
                FOR EACH ROW EXECUTE FUNCTION action_triggers.capture('post_save', '1');
            """)
        let problems = try connection.query("SELECT cardinality(action_triggers.sync_triggers()) AS n").singleRow()

        #expect(try problems.int("n") == 0)
        #expect(try connection.query(arguments).singleRow().string("args") == correct)
        #expect(correct.hasPrefix("post_save\\000"))
    }

    @Test("locked table is skipped, then repaired")
    func lockedTableSkipped() throws {
        let harness = try Harness()
        let connection = try harness.database.connect()
        try MigrationHelper.migrate(connection)
        let configID = try harness.createConfig(harness.exampleOneConfig())
        let triggerCount = "SELECT count(*) AS n FROM pg_trigger WHERE tgrelid = 'myapp_customer'::regclass AND NOT tgisinternal"

        // Deactivate without the automatic sync, so the triggers are left for sync_triggers to drop.
        try connection.execute("SET action_triggers.syncing = 'on'")
        try connection.query("UPDATE action_triggers.config SET active = false WHERE id = $1", [String(configID)])
        try connection.execute("RESET action_triggers.syncing")
        let holder = try harness.database.connect()
        try holder.execute("BEGIN")
        try holder.execute("LOCK TABLE myapp_customer IN ACCESS EXCLUSIVE MODE")
        let whileLocked = try connection.query("SELECT array_to_json(action_triggers.sync_triggers(100))::text AS problems").singleRow()
        try holder.execute("COMMIT")
        let afterUnlock = try connection.query("SELECT cardinality(action_triggers.sync_triggers(100)) AS n").singleRow()

        #expect(whileLocked["problems"]?.contains("table public.myapp_customer is locked by another transaction") == true, "problems: \(whileLocked["problems"] ?? "NULL")")
        #expect(try afterUnlock.int("n") == 0)
        #expect(try connection.query(triggerCount).singleRow().int("n") == 0)
        #expect(try connection.query("SHOW lock_timeout").singleRow()["lock_timeout"] == "0")
    }

    @Test("register_model rejects views")
    func registerModelRejectsViews() throws {
        let harness = try Harness()
        let connection = try harness.database.connect()
        try MigrationHelper.migrate(connection)
        try connection.execute("CREATE VIEW customer_view AS SELECT * FROM myapp_customer")

        do {
            try connection.query("SELECT action_triggers.register_model('myapp', 'CustomerView', 'customer_view')")
            Issue.record("register_model accepted a view")
        } catch let error as PostgresError {
            #expect(error.message == "customer_view is not a table: capture triggers need a table or a partitioned table")
        }
    }

    @Test("plain SQL cannot store an absurd timeout")
    func plainSQLTimeoutRange() throws {
        let harness = try Harness()
        let connection = try harness.database.connect()
        try MigrationHelper.migrate(connection)
        let configID = try harness.createConfig(harness.exampleOneConfig())

        #expect(throws: PostgresError.self) {
            try connection.query("UPDATE action_triggers.webhook SET timeout_secs = 1e300 WHERE config_id = $1", [String(configID)])
        }
    }

    @Test(
        "plain SQL webhook writes are checked",
        arguments: [
            (#"signing_secrets = '["abc"]'"#,
             "signing_secrets[0] must be whsec_ followed by base64, as Standard Webhooks secrets are, or a {{ name }} dynamic value"),
            ("signing_secrets = '[5]'", "signing_secrets[0] must be a string (got number)"),
            ("signing_secrets = '[null]'", "signing_secrets[0] must be a string (got null)"),
            (#"signing_secrets = '["whsec_dG9vc2hvcnQ="]'"#,
             "signing_secrets[0] must encode 24 to 64 bytes of key, as Standard Webhooks recommends"),
            (#"signing_secrets = '["whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]'"#,
             "signing_secrets[0] must be whsec_ followed by valid base64, with its = padding (a 32-byte key takes 44 characters)"),
            (#"signing_secrets = '["{{ unknown_name }}"]'"#,
             "signing_secrets[0] dynamic value unknown_name is not in dynamic_values of the settings file; add it there to allow it"),
            ("signing_secrets = NULL", "signing_secrets must be a list of whsec_ secrets, empty for none (got null)"),
            ("headers = '[]'", "headers must be an object of header names to string values (got array)"),
            ("headers = NULL", "headers must be an object of header names to string values (got null)"),
            (#"headers = '{"X-Dup": "a", "x-dup": "b"}'"#, "header x-dup is given twice: HTTP header names ignore case"),
            (#"headers = '{"X-Token": "{{ missing }}"}'"#,
             "headers.X-Token dynamic value missing is not in dynamic_values of the settings file; add it there to allow it"),
            ("http_method = 'BREW'", "http_method must be one of GET, POST, PUT, PATCH, DELETE"),
            ("url = NULL", "url must not be null"),
            ("position = NULL", "position must not be null"),
            ("ca_bundle = 'relative.pem'", "ca_bundle must be an absolute path"),
            ("timeout_secs = 'NaN'", "timeout_secs must be from 0 to 86400 seconds, or null for the default"),
        ])
    func plainSQLWebhookChecks(assignment: String, message: String) throws {
        let harness = try Harness()
        let connection = try harness.database.connect()
        try MigrationHelper.migrate(connection)
        let configID = try harness.createConfig(harness.exampleOneConfig())
        let secret = "whsec_" + Data(repeating: 0x6b, count: 32).base64EncodedString()
        try connection.query(
            "UPDATE action_triggers.webhook SET signing_secrets = jsonb_build_array($1::text) WHERE config_id = $2",
            [secret, String(configID)])

        do {
            try connection.query("UPDATE action_triggers.webhook SET \(assignment) WHERE config_id = $1", [String(configID)])
            Issue.record("plain SQL stored \(assignment)")
        } catch let error as PostgresError {
            #expect(error.sqlState == "22023")
            #expect(error.message == message)
            // A constraint's own error would print the whole row, stored secret included.
            #expect(!(error.detail ?? "").contains(secret))
        }
        let stored = try connection.query(
            "SELECT signing_secrets ->> 0 AS secret FROM action_triggers.webhook WHERE config_id = $1", [String(configID)])
        #expect(try stored.singleRow().string("secret") == secret)
    }

    @Test(
        "plain SQL broker queue writes are checked",
        arguments: [
            ("name = 'missing'", #"no broker named "missing" in brokers of the settings file"#),
            ("conn_details = '[]'", "conn_details must be an object (got array)"),
            ("conn_details = NULL", "conn_details must be an object (got null)"),
            ("parameters = NULL", "parameters must be an object (got null)"),
            (#"parameters = '{"channel": "{{ unknown_name }}"}'"#,
             "parameters.channel dynamic value unknown_name is not in dynamic_values of the settings file; add it there to allow it"),
            (#"conn_details = '{"port": 2}'"#,
             "msg_broker_queue.conn_details.port is set by broker bus in the settings file, so a config cannot override it"),
            ("parameters = '{}'",
             "msg_broker_queue.parameters.channel broker bus needs a channel (PUBLISH) or a stream (XADD), in its params or here"),
            ("timeout_secs = -1", "timeout_secs must be from 0 to 86400 seconds, or null for the default"),
            ("position = NULL", "position must not be null"),
        ])
    func plainSQLBrokerQueueChecks(assignment: String, message: String) async throws {
        let harness = try Harness()
        try await harness.startService(settings: Harness.settings(
            allowing: [harness.receiver],
            extra: #""brokers": {"bus": {"broker_type": "redis", "conn_details": {"host": "127.0.0.1", "port": 1}}}"#))
        let configID = try harness.createConfig("""
            {"config_signals": [{"signal": "post_save"}],
             "content_types": [{"app_label": "myapp", "model_name": "Customer"}],
             "msg_broker_queues": [{"name": "bus", "parameters": {"channel": "events"}}],
             "active": true}
            """)
        let secret = "redis-password-\(configID)-never-printed"
        try harness.database.query(
            "UPDATE action_triggers.msg_broker_queue SET conn_details = jsonb_build_object('password', $1::text) WHERE config_id = $2",
            [secret, String(configID)])

        do {
            try harness.database.query(
                "UPDATE action_triggers.msg_broker_queue SET \(assignment) WHERE config_id = $1", [String(configID)])
            Issue.record("plain SQL stored \(assignment)")
        } catch let error as PostgresError {
            #expect(error.sqlState == "22023")
            #expect(error.message == message)
            #expect(!(error.detail ?? "").contains(secret))
        }
        let stored = try harness.database.query(
            "SELECT conn_details ->> 'password' AS password FROM action_triggers.msg_broker_queue WHERE config_id = $1",
            [String(configID)])
        #expect(try stored.singleRow().string("password") == secret)
    }

    @Test("get_config returns the stored body with its id")
    func getConfigRoundTrip() throws {
        let harness = try Harness()
        let connection = try harness.database.connect()
        try MigrationHelper.migrate(connection)
        let body = """
            {"config_signals": [{"signal": "post_save"}, {"signal": "pre_delete"}],
             "content_types": [{"app_label": "myapp", "model": "Sale"}, {"app_label": "myapp", "model_name": "Product"}],
             "webhooks": [{"url": "https://example.com/hook", "http_method": "PATCH", "headers": {"X-Key": "v"}, "timeout_secs": 2.25},
                          {"url": "http://127.0.0.1:1/other", "http_method": "GET"}],
             "active": false}
            """
        let id = try harness.createConfig(body)

        let stored = try connection.query("SELECT action_triggers.get_config($1) = $2::jsonb AS same, action_triggers.get_config($1) AS body", [
            String(id),
            """
            {"id": \(id),
             "config_signals": [{"signal": "post_save"}, {"signal": "pre_delete"}],
             "content_types": [{"app_label": "myapp", "model_name": "Sale"}, {"app_label": "myapp", "model_name": "Product"}],
             "webhooks": [{"url": "https://example.com/hook", "http_method": "PATCH", "headers": {"X-Key": "v"}, "timeout_secs": 2.25},
                          {"url": "http://127.0.0.1:1/other", "http_method": "GET", "headers": {}}],
             "msg_broker_queues": [], "active": false, "payload": null}
            """,
        ]).singleRow()
        #expect(stored["same"] == "t", "stored: \(stored["body"] ?? "NULL")")
        #expect(try connection.query("SELECT action_triggers.get_config(999999) AS body").singleRow()["body"] == nil)
    }

    @Test("invalid bodies name every field", arguments: [
        (#"{"content_types": [{"app_label": "myapp", "model_name": "Customer"}], "active": true}"#, "config_signals", "must be a list"),
        (#"{"config_signals": [], "content_types": [{"app_label": "myapp", "model_name": "Customer"}], "active": true}"#, "config_signals", "at least one"),
        (#"{"config_signals": [{"signal": "saved"}], "content_types": [{"app_label": "myapp", "model_name": "Customer"}], "active": true}"#, "config_signals[0].signal", "must be one of"),
        (#"{"config_signals": [{"signal": "post_save"}, {"signal": "post_save"}], "content_types": [{"app_label": "myapp", "model_name": "Customer"}], "active": true}"#, "config_signals[1].signal", "duplicate"),
        (#"{"config_signals": [{"signal": "post_save"}], "content_types": [{"app_label": "myapp", "model_name": "Ghost"}], "active": true}"#, "content_types[0]", "no table found for model myapp.ghost"),
        (#"{"config_signals": [{"signal": "post_save"}], "content_types": [{"app_label": "myapp"}], "active": true}"#, "content_types[0].model_name", "must be a non-empty string"),
        (#"{"config_signals": [{"signal": "post_save"}], "content_types": [{"app_label": "myapp", "model_name": "Customer"}], "active": "yes"}"#, "active", "must be true or false"),
        (#"{"config_signals": [{"signal": "post_save"}], "content_types": [{"app_label": "myapp", "model_name": "Customer"}], "active": null}"#, "active", "must be true or false"),
        (#"{"config_signals": [{"signal": "post_save"}], "content_types": [{"app_label": "myapp", "model_name": "Customer"}], "active": true, "colour": 1}"#, "colour", "unknown field"),
        (#"{"config_signals": [{"signal": "post_save"}], "content_types": [{"app_label": "myapp", "model_name": "Customer"}], "active": true, "webhooks": [{"url": "ftp://x/", "http_method": "POST"}]}"#, "webhooks[0].url", "is not an absolute http"),
        (#"{"config_signals": [{"signal": "post_save"}], "content_types": [{"app_label": "myapp", "model_name": "Customer"}], "active": true, "webhooks": [{"url": "http://127.0.0.1/", "http_method": "HEAD"}]}"#, "webhooks[0].http_method", "must be one of GET, POST, PUT, PATCH, DELETE"),
        (#"{"config_signals": [{"signal": "post_save"}], "content_types": [{"app_label": "myapp", "model_name": "Customer"}], "active": true, "webhooks": [{"url": "http://127.0.0.1/", "http_method": "POST", "timeout_secs": -1}]}"#, "webhooks[0].timeout_secs", "must be a number from 0 to 86400"),
        (#"{"config_signals": [{"signal": "post_save"}], "content_types": [{"app_label": "myapp", "model_name": "Customer"}], "active": true, "webhooks": [{"url": "http://127.0.0.1/", "http_method": "POST", "headers": {"X": 1}}]}"#, "webhooks[0].headers.X", "must be a string"),
        (#"{"config_signals": [{"signal": "post_save"}], "content_types": [{"app_label": "myapp", "model_name": "Customer"}], "active": true, "webhooks": [{"url": "http://127.0.0.1/", "http_method": "POST", "headers": {"X": "a\r\nInjected: 1"}}]}"#, "webhooks[0].headers.X", "line breaks"),
        (#"{"config_signals": [{"signal": "post_save"}], "content_types": [{"app_label": "myapp", "model_name": "Customer"}], "active": true, "msg_broker_queues": [{"name": "rabbit"}]}"#, "msg_broker_queues[0].name", "no broker named"),
        (#"{"config_signals": [{"signal": "post_save"}], "content_types": [{"app_label": "myapp", "model_name": "Customer"}], "active": true, "payload": [1]}"#, "payload", "must be an object"),
        (#"[1, 2]"#, "non_field_errors", "must be a JSON object"),
        (#"{"config_signals": [{"signal": "post_save", "when": 1}], "content_types": [{"app_label": "myapp", "model_name": "Customer"}], "active": true}"#, "config_signals[0].when", "unknown field"),
        (#"{"config_signals": [{"signal": "post_save"}], "content_types": [{"app_label": "myapp", "model_name": "Customer"}], "active": true, "webhooks": [{"url": "http://127.0.0.1/", "method": "POST"}]}"#, "webhooks[0].method", "unknown field"),
        (#"{"config_signals": [{"signal": "post_save"}], "content_types": [{"app_label": "myapp", "model_name": "Customer"}], "active": true, "webhooks": [{"url": "http://127.0.0.1/", "http_method": "POST", "timeout_secs": "10"}]}"#, "webhooks[0].timeout_secs", "must be a number from 0 to 86400 (got \"10\")"),
        (#"{"config_signals": [{"signal": "post_save"}], "content_types": [{"app_label": "myapp", "model_name": "Customer"}], "active": true, "webhooks": [{"url": "http://127.0.0.1/", "http_method": "POST", "timeout_secs": 1e400}]}"#, "webhooks[0].timeout_secs", "must be a number from 0 to 86400"),
        (#"{"config_signals": [{"signal": "post_save"}], "content_types": [{"app_label": "myapp", "model_name": "Customer"}], "active": true, "webhooks": [{"url": "http://127.0.0.1/", "http_method": "POST", "headers": {"Content-Length": "2"}}]}"#, "webhooks[0].headers.Content-Length", "controls the HTTP connection"),
        (#"{"config_signals": [{"signal": "post_save"}], "content_types": [{"app_label": "myapp", "model_name": "Customer"}], "active": true, "webhooks": [{"url": "http://127.0.0.1/", "http_method": "POST", "headers": {"webhook-id": "x"}}]}"#, "webhooks[0].headers.webhook-id", "is set by the service"),
        (#"{"config_signals": [{"signal": "post_save"}], "content_types": [{"app_label": "myapp", "model_name": "Customer"}], "active": true, "webhooks": [{"url": "http://127.0.0.1/", "http_method": "POST"}, {"url": "http://127.0.0.1/", "http_method": "POST", "headers": {"X-Dup": "a", "x-dup": "b"}}]}"#, "webhooks[1].headers.x-dup", "header x-dup is given twice: HTTP header names ignore case"),
        (#"{"config_signals": [{"signal": "post_save"}], "content_types": [{"app_label": "myapp", "model_name": "Customer"}], "active": true}"#, "webhooks", "add at least one webhook or msg_broker_queues entry"),
        (#"{"config_signals": [{"signal": "post_save"}], "content_types": [{"app_label": "myapp", "model_name": "Customer"}], "webhooks": [{"url": "http://127.0.0.1:9/x", "http_method": "POST"}]}"#, "active", "is required: must be true or false"),
        (#"{"config_signals": [{}], "content_types": [{"model_name": "Customer"}], "webhooks": [{"url": "http://127.0.0.1:9/x"}], "active": true}"#, "webhooks[0].http_method", "is required: must be one of GET, POST, PUT, PATCH, DELETE"),
        (#"{"config_signals": [{"signal": "post_save"}], "content_types": [{"app_label": "myapp", "model_name": "Customer"}], "active": true, "webhooks": []}"#, "webhooks", "add at least one webhook or msg_broker_queues entry"),
    ])
    func invalidBodies(body: String, path: String, message: String) throws {
        let harness = try Harness()
        let connection = try harness.database.connect()
        try MigrationHelper.migrate(connection)

        let errors = try connection.query("SELECT action_triggers.validate_config($1::jsonb) AS errors", [body]).singleRow().string("errors")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(errors.utf8)) as? [String: [String]])
        #expect(object[path]?.contains { $0.contains(message) } == true, "errors: \(errors)")

        do {
            try connection.query("SELECT action_triggers.create_config($1::jsonb)", [body])
            Issue.record("create_config accepted an invalid body")
        } catch let error as PostgresError {
            #expect(error.sqlState == "22023")
            #expect(error.message.hasPrefix("invalid config: "))
            #expect(!error.message.contains("non_field_errors"), "\(error.message)")
            #expect(error.detail == errors)
        }
        #expect(try connection.query("SELECT count(*) AS n FROM action_triggers.config").singleRow().int("n") == 0)
    }

    @Test("unknown ids are errors for update and delete")
    func unknownIDs() throws {
        let harness = try Harness()
        let connection = try harness.database.connect()
        try MigrationHelper.migrate(connection)

        for statement in ["SELECT action_triggers.delete_config(424242)",
                          "SELECT action_triggers.update_config(424242, '{}'::jsonb)"] {
            do {
                try connection.query(statement)
                Issue.record("\(statement) succeeded")
            } catch let error as PostgresError {
                #expect(error.sqlState == "P0002")
                #expect(error.message == "config 424242 not found")
            }
        }
    }

    @Test("register_model maps a model to any table")
    func registerModel() async throws {
        let harness = try Harness()
        try harness.database.execute("CREATE SCHEMA crm; CREATE TABLE crm.\"Client Table\" (id serial PRIMARY KEY, label text)")
        try await harness.startService()
        try harness.database.query("SELECT action_triggers.register_model('billing', 'Client', 'crm.\"Client Table\"')")
        try harness.createConfig("""
            {"config_signals": [{"signal": "post_save"}],
             "content_types": [{"app_label": "billing", "model_name": "Client"}],
             "webhooks": [{"url": "\(harness.receiver.baseURL)/client", "http_method": "POST"}],
             "active": true}
            """)

        try harness.database.query("INSERT INTO crm.\"Client Table\" (label) VALUES ('quoted')")
        let requests = try await harness.receiver.waitForRequests(count: 1, timeout: .seconds(20))

        #expect(try jsonObject(requests[0])["label"] as? String == "quoted")
    }

    @Test("role without schema rights can still write")
    func unprivilegedWriter() async throws {
        let harness = try Harness()
        try await harness.startService()
        try harness.createConfig(harness.exampleOneConfig())
        let role = "writer_" + harness.database.name
        try harness.database.query("CREATE ROLE \(role)")
        defer { _ = try? harness.database.execute("DROP OWNED BY \(role); DROP ROLE \(role)") }
        try harness.database.execute("GRANT INSERT, SELECT ON myapp_customer TO \(role); GRANT USAGE ON SEQUENCE myapp_customer_id_seq TO \(role)")

        let connection = try harness.database.connect()
        try connection.execute("SET ROLE \(role)")
        try connection.query("INSERT INTO myapp_customer (name, email) VALUES ('limited', 'l@example.com')")
        let denied = try connection.query("SELECT has_schema_privilege('action_triggers', 'USAGE') AS allowed").singleRow()
        let requests = try await harness.receiver.waitForRequests(count: 1, timeout: .seconds(20))

        #expect(denied["allowed"] == "f")
        #expect(try jsonObject(requests[0])["name"] as? String == "limited")
    }

    @Test("URL outside the allowlist never gets a connection")
    func allowlistEnforced() async throws {
        let harness = try Harness()
        let forbidden = try TestReceiver()
        try await harness.startService(settings: Harness.settings(allowing: [harness.receiver]))
        let forbiddenConfig = """
            {"config_signals": [{"signal": "post_save"}],
             "content_types": [{"app_label": "myapp", "model_name": "Customer"}],
             "webhooks": [{"url": "\(forbidden.baseURL)/hook", "http_method": "POST"}],
             "active": true}
            """

        // Rejected when saved, through the function and through plain SQL.
        do {
            try harness.createConfig(forbiddenConfig)
            Issue.record("create_config accepted a URL outside the allowlist")
        } catch let error as PostgresError {
            #expect(error.message.contains("does not match any of whitelisted_webhook_endpoint_patterns"))
        }
        let configID = try harness.createConfig(harness.exampleOneConfig())
        do {
            try harness.database.query(
                "INSERT INTO action_triggers.webhook (config_id, position, url, http_method) VALUES ($1, 1, $2, 'POST')",
                [String(configID), forbidden.baseURL + "/plain-sql"])
            Issue.record("plain SQL stored a URL outside the allowlist")
        } catch let error as PostgresError {
            #expect(error.message.contains("does not match any of whitelisted_webhook_endpoint_patterns"))
        }

        do {
            try harness.database.query(
                "UPDATE action_triggers.webhook SET headers = $1::jsonb WHERE config_id = $2",
                [#"{"X-Test": "a\r\nInjected: 1"}"#, String(configID)])
            Issue.record("plain SQL stored a header with a line break")
        } catch let error as PostgresError {
            #expect(error.message == "header X-Test must not contain line breaks or control characters")
        }

        // Saved while allowed, then the allowlist narrows: the delivery fails unsent.
        try await harness.startService(settings: Harness.settings(allowing: [harness.receiver, forbidden]))
        try harness.database.query("SELECT action_triggers.delete_config($1)", [String(configID)])
        let forbiddenID = try harness.createConfig(forbiddenConfig)
        let narrowed = try await harness.startService(settings: Harness.settings(allowing: [harness.receiver]))
        try await narrowed.waitForLog("msg=\"active config has a webhook that cannot be sent; fix its URL or switch the config off\"")
        #expect(narrowed.log.contains("config.id=\(forbiddenID) webhook.position=0"), "\(narrowed.log)")
        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('blocked', 'b@example.com')")
        try await harness.waitUntil("the delivery fails") {
            try harness.onlyDeliveryStatus() == "failed"
        }

        let delivery = try harness.database.query("SELECT last_error, last_status_code FROM action_triggers.delivery").singleRow()
        #expect(delivery["last_error"]?.contains("does not match any of whitelisted_webhook_endpoint_patterns") == true)
        #expect(delivery["last_status_code"] == nil)
        #expect(forbidden.connectionCount == 0)
        #expect(forbidden.requests.isEmpty)
    }

    @Test("config outside a narrowed allowlist can be switched off")
    func switchOffOutsideAllowlist() async throws {
        let harness = try Harness()
        let forbidden = try TestReceiver()
        try await harness.startService(settings: Harness.settings(allowing: [harness.receiver, forbidden]))
        let configID = try harness.createConfig("""
            {"config_signals": [{"signal": "post_save"}],
             "content_types": [{"app_label": "myapp", "model_name": "Customer"}],
             "webhooks": [{"url": "\(forbidden.baseURL)/hook", "http_method": "POST"}],
             "active": true}
            """)
        let service = try await harness.startService(settings: Harness.settings(allowing: [harness.receiver]))
        let url = try await service.httpBaseURL() + "/api/action-triggers/\(configID)"

        let switchedOff = try await send("PATCH", url, body: #"{"active": false}"#)
        #expect(switchedOff.status == 200, "\(switchedOff.body)")
        let stored = try harness.database.query("SELECT active FROM action_triggers.config WHERE id = $1", [String(configID)])
        #expect(try stored.singleRow()["active"] == "f")

        // Switching it on again checks the URL, through the API and through plain SQL.
        let switchedOn = try await send("PATCH", url, body: #"{"active": true}"#)
        #expect(switchedOn.status == 400)
        let errors = try #require(try switchedOn.json() as? [String: [String]], "\(switchedOn.body)")
        #expect(errors["webhooks[0].url"]?.first?.contains("does not match any of whitelisted_webhook_endpoint_patterns") == true)
        do {
            try harness.database.query("UPDATE action_triggers.config SET active = true WHERE id = $1", [String(configID)])
            Issue.record("plain SQL switched on a config whose URL the allowlist rejects")
        } catch let error as PostgresError {
            #expect(error.message.contains("does not match any of whitelisted_webhook_endpoint_patterns"))
        }
        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('off', 'o@example.com')")
        try await Task.sleep(for: .seconds(1))
        #expect(try harness.database.query("SELECT count(*) AS n FROM action_triggers.delivery").singleRow().int("n") == 0)
        #expect(forbidden.connectionCount == 0)
    }

    @Test("URLs are redacted in messages", arguments: [
        ("https://user:pass@example.com/hook?token=abc#frag", "https://example.com/hook"),
        ("http://127.0.0.1:8080/a/b", "http://127.0.0.1:8080/a/b"),
        ("https://example.com?key=1", "https://example.com"),
        ("https://a@b@example.com/x", "https://example.com/x"),
    ])
    func redactURL(url: String, expected: String) throws {
        let harness = try Harness()
        let connection = try harness.database.connect()
        try MigrationHelper.migrate(connection)

        #expect(try connection.query("SELECT action_triggers.redact_url($1) AS url", [url]).singleRow()["url"] == expected)
    }

    @Test("allowlist patterns match from the start")
    func allowlistPatterns() throws {
        let harness = try Harness()
        let connection = try harness.database.connect()
        try MigrationHelper.migrate(connection)
        try connection.query("""
            INSERT INTO action_triggers.setting (key, value)
            VALUES ('whitelisted_webhook_endpoint_patterns', $1::jsonb)
            """, [#"["https?://localhost:[0-9]+/webhook/", "https://example\\.com/", "(?i)https://upper\\.example/"]"#])
        let check = "SELECT action_triggers.webhook_url_error($1) AS problem"

        for allowed in ["http://localhost:8000/webhook/1", "https://example.com/any", "https://UPPER.example/x", "HTTPS://UPPER.EXAMPLE/"] {
            #expect(try connection.query(check, [allowed]).singleRow()["problem"] == nil, "\(allowed) was rejected")
        }
        for rejected in ["https://evil.test/?https://example.com/", "https://example.com.evil.test/", "ftp://example.com/", "https://example.com /x"] {
            #expect(try connection.query(check, [rejected]).singleRow()["problem"] != nil, "\(rejected) was allowed")
        }
        #expect(try connection.query("SELECT action_triggers.pattern_error('(unclosed') AS problem").singleRow()["problem"] != nil)
        #expect(try connection.query("SELECT action_triggers.pattern_error('(?i)ok/') AS problem").singleRow()["problem"] == nil)
    }

    @Test("invalid allowlist pattern stops the service")
    func invalidPatternRejected() async throws {
        let harness = try Harness()
        let settings = #"{"whitelisted_webhook_endpoint_patterns": ["https://ok/", "(unclosed"]}"#
        let service = try ServiceProcess(databaseURL: harness.database.url, settings: settings)

        try await harness.waitUntil("the service exits") { !service.isRunning }

        #expect(service.terminationStatus == 1)
        #expect(service.log.contains("whitelisted_webhook_endpoint_patterns[1] is not a valid PostgreSQL regular expression"))
    }

    @Test("migrate twice changes nothing")
    func migrateIsIdempotent() throws {
        let harness = try Harness()
        let connection = try harness.database.connect()

        let first = try MigrationHelper.migrate(connection)
        let second = try MigrationHelper.migrate(connection)

        #expect(first == (try Migrator.bundledMigrations().map(\.version)))
        #expect(second.isEmpty)
        let recorded = try connection.query("SELECT count(*) AS n FROM action_triggers.schema_migration").singleRow().int("n")
        #expect(recorded == first.count)
    }
}
