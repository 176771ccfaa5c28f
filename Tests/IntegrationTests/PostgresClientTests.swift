import Foundation
import PostgresClient
import Testing

/// The libpq wrapper against a real server.
@Suite("PostgresConnection")
struct PostgresClientTests {
    @Test("connects by URI and by conninfo")
    func connectBothForms() throws {
        let url = try TestEnvironment.adminDatabaseURL()
        let components = try #require(URLComponents(string: url))
        let conninfo = "host=\(components.host ?? "127.0.0.1") port=\(components.port ?? 5432) user=\(components.user ?? "postgres") dbname=postgres"

        for target in [url, conninfo] {
            let connection = try PostgresConnection(conninfo: target, applicationName: "client-test")
            let row = try connection.query("SELECT current_setting('application_name') AS name, 1 + 1 AS two").singleRow()
            #expect(row["name"] == "client-test")
            #expect(try row.int("two") == 2)
        }
    }

    @Test("unreachable server is a connection error")
    func unreachable() {
        do {
            _ = try PostgresConnection(conninfo: "postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=2", applicationName: "client-test")
            Issue.record("connected to a closed port")
        } catch let error as PostgresError {
            #expect(error.kind == .connection)
            #expect(error.description.hasPrefix("connect failed: "))
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test("parameters are values, never SQL")
    func parameters() throws {
        let connection = try PostgresConnection(conninfo: try TestEnvironment.adminDatabaseURL(), applicationName: "client-test")
        let tricky = "'; DROP TABLE x; --\n\u{1F600} \"quoted\""

        let row = try connection.query("SELECT $1::text AS text, $2::text IS NULL AS missing, $3::bigint AS big", [tricky, nil, "50755254975729665"]).singleRow()

        #expect(row["text"] == tricky)
        #expect(try row.bool("missing"))
        #expect(try row.int64("big") == 50755254975729665)
    }

    @Test("decoding errors name the column")
    func decodingErrors() throws {
        let connection = try PostgresConnection(conninfo: try TestEnvironment.adminDatabaseURL(), applicationName: "client-test")
        let row = try connection.query("SELECT NULL::int AS empty, 'x' AS letter").singleRow()

        #expect(throws: PostgresError.self) { try row.int("empty") }
        #expect(throws: PostgresError.self) { try row.int("letter") }
        #expect(throws: PostgresError.self) { try row.string("absent") }
        #expect(try row.optional("empty", row.int) == nil)
    }

    @Test("server errors carry SQLSTATE and keep the connection")
    func serverError() throws {
        let connection = try PostgresConnection(conninfo: try TestEnvironment.adminDatabaseURL(), applicationName: "client-test")

        do {
            try connection.query("SELECT 1/0")
            Issue.record("division by zero succeeded")
        } catch let error as PostgresError {
            #expect(error.kind == .server)
            #expect(error.sqlState == "22012")
        }
        #expect(connection.isOpen)
        #expect(try connection.query("SELECT 1 AS one").singleRow()["one"] == "1")
    }

    @Test("transaction rolls back when the body throws")
    func transactionRollback() throws {
        let connection = try PostgresConnection(conninfo: try TestEnvironment.adminDatabaseURL(), applicationName: "client-test")
        try connection.execute("CREATE TEMP TABLE items (value text)")
        struct Abort: Error {}

        #expect(throws: Abort.self) {
            try connection.transaction { connection in
                try connection.query("INSERT INTO items VALUES ('lost')")
                throw Abort()
            }
        }
        _ = try connection.transaction { connection in
            try connection.query("INSERT INTO items VALUES ('kept')")
        }

        #expect(try connection.query("SELECT value FROM items").rows.map { $0["value"] } == ["kept"])
    }

    @Test("LISTEN receives notifications and times out")
    func listenNotify() throws {
        let url = try TestEnvironment.adminDatabaseURL()
        let listener = try PostgresConnection(conninfo: url, applicationName: "client-test")
        let sender = try PostgresConnection(conninfo: url, applicationName: "client-test")
        let channel = "Mixed Case \"channel\""
        try listener.listen(channel)

        #expect(try listener.waitForNotifications(timeout: .milliseconds(50)).isEmpty)
        try sender.query("SELECT pg_notify($1, 'hello')", [channel])
        var received: [PostgresNotification] = []
        let deadline = ContinuousClock.now + .seconds(5)
        while received.isEmpty && ContinuousClock.now < deadline {
            received = try listener.waitForNotifications(timeout: .milliseconds(200))
        }

        #expect(received == [PostgresNotification(channel: channel, payload: "hello", senderPID: sender.backendPID)])
    }

    @Test("terminated connection is reported as lost")
    func terminated() throws {
        let url = try TestEnvironment.adminDatabaseURL()
        let victim = try PostgresConnection(conninfo: url, applicationName: "client-test")
        let killer = try PostgresConnection(conninfo: url, applicationName: "client-test")
        try victim.listen("anything")

        try killer.query("SELECT pg_terminate_backend($1)", [String(victim.backendPID)])
        var lost: PostgresError?
        let deadline = ContinuousClock.now + .seconds(5)
        while lost == nil && ContinuousClock.now < deadline {
            do {
                _ = try victim.waitForNotifications(timeout: .milliseconds(200))
            } catch let error as PostgresError {
                lost = error
            }
        }

        #expect(lost?.isConnectionLost == true)
    }
}

@Suite("PostgresConnection.queryPrepared")
struct PreparedStatementTests {
    @Test("prepares once and reuses the statement")
    func reuse() throws {
        let connection = try PostgresConnection(conninfo: try TestEnvironment.adminDatabaseURL(), applicationName: "client-test")
        let sql = "SELECT $1::int + 1 AS next"

        for value in 1...3 {
            #expect(try connection.queryPrepared(sql, [String(value)]).singleRow().int("next") == value + 1)
        }
        let prepared = try connection.query("SELECT count(*) AS n FROM pg_prepared_statements WHERE statement = $1", [sql])
        #expect(try prepared.singleRow().int("n") == 1)
    }

    @Test("a failing prepared statement keeps the connection")
    func failure() throws {
        let connection = try PostgresConnection(conninfo: try TestEnvironment.adminDatabaseURL(), applicationName: "client-test")

        #expect(throws: PostgresError.self) { try connection.queryPrepared("SELECT 1 / $1::int AS x", ["0"]) }
        #expect(try connection.queryPrepared("SELECT 1 / $1::int AS x", ["1"]).singleRow().int("x") == 1)
    }

    @Test("whileWaiting runs until the result arrives")
    func whileWaiting() throws {
        let connection = try PostgresConnection(conninfo: try TestEnvironment.adminDatabaseURL(), applicationName: "client-test")
        let sql = "SELECT $1::int + 1 AS next FROM pg_sleep(0.2)"
        var calls = 0
        var sockets: Set<Int32> = []

        let started = ContinuousClock.now
        let row = try connection.queryPrepared(sql, ["41"]) { socket in
            calls += 1
            sockets.insert(socket)
            Thread.sleep(forTimeInterval: 0.01)
        }.singleRow()

        #expect(try row.int("next") == 42)
        #expect(ContinuousClock.now - started >= .milliseconds(200))
        // The statement sleeps 200 ms and each call 10 ms, so the closure runs several times.
        #expect(calls >= 5)
        #expect(sockets.count == 1)
        #expect(sockets.allSatisfy { $0 >= 0 })
        #expect(try connection.queryPrepared(sql, ["1"]).singleRow().int("next") == 2)
    }

    @Test("whileWaiting failure keeps the connection")
    func whileWaitingFailure() throws {
        let connection = try PostgresConnection(conninfo: try TestEnvironment.adminDatabaseURL(), applicationName: "client-test")
        let sql = "SELECT 1 / $1::int AS x"

        do {
            try connection.queryPrepared(sql, ["0"]) { _ in Thread.sleep(forTimeInterval: 0.001) }
            Issue.record("division by zero returned a result")
        } catch let error as PostgresError {
            #expect(error.kind == .server)
            #expect(error.sqlState == "22012")
        }
        #expect(try connection.queryPrepared(sql, ["1"]) { _ in }.singleRow().int("x") == 1)
    }

    @Test("whileWaiting reports a terminated backend as lost")
    func whileWaitingTerminated() throws {
        let url = try TestEnvironment.adminDatabaseURL()
        let victim = try PostgresConnection(conninfo: url, applicationName: "client-test")
        let killer = try PostgresConnection(conninfo: url, applicationName: "client-test")
        var terminated = false

        do {
            try victim.queryPrepared("SELECT pg_sleep($1::double precision)", ["5"]) { _ in
                if !terminated {
                    terminated = true
                    _ = try? killer.query("SELECT pg_terminate_backend($1)", [String(victim.backendPID)])
                }
                Thread.sleep(forTimeInterval: 0.01)
            }
            Issue.record("the terminated statement returned a result")
        } catch let error as PostgresError {
            #expect(error.isConnectionLost)
        }
        #expect(terminated)
    }
}
