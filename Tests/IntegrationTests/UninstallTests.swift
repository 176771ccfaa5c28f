import Foundation
import PostgresClient
import Testing

/// `action-triggers uninstall` removes the service and leaves the application's data untouched.
@Suite("Uninstall", .serialized)
struct UninstallTests {
    /// Runs the built executable and returns its exit status and stderr.
    private func runCommand(_ arguments: [String], databaseURL: String) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = TestEnvironment.serviceBinary
        process.arguments = arguments + ["--database-url", databaseURL]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let output = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    private func countTriggers(_ harness: Harness) throws -> Int {
        try harness.database.query("""
            SELECT count(*) AS n FROM pg_trigger
            WHERE tgrelid IN ('myapp_customer'::regclass, 'myapp_product'::regclass) AND NOT tgisinternal
            """).singleRow().int("n")
    }

    @Test("uninstall drops triggers and schema, keeps the data")
    func uninstall() throws {
        let harness = try Harness()
        _ = try MigrationHelper.migrate(try harness.database.connect())
        try harness.createConfig(harness.exampleOneConfig())
        try harness.createConfig(harness.markerConfig())
        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('Ada', 'ada@example.com')")
        #expect(try countTriggers(harness) == 3)

        let planned = try runCommand(["uninstall"], databaseURL: harness.database.url)
        #expect(planned.status == 2)
        #expect(planned.output.contains("Without --yes, nothing was changed. With --yes, uninstall would remove:"))
        let listed = planned.output.split(separator: "\n").filter { $0.hasPrefix("  trigger ") }
        #expect(listed.count == 3, "\(planned.output)")
        #expect(listed.contains("  trigger action_triggers_post_save on myapp_customer"), "\(planned.output)")
        #expect(planned.output.contains("  schema action_triggers, with its configs, outbox and delivery log"))
        #expect(try countTriggers(harness) == 3)

        let done = try runCommand(["uninstall", "--yes"], databaseURL: harness.database.url)
        #expect(done.status == 0, "\(done.output)")
        #expect(done.output.contains("msg=uninstalled"))

        #expect(try countTriggers(harness) == 0)
        let schema = try harness.database.query("SELECT to_regnamespace('action_triggers') IS NULL AS gone").singleRow()
        #expect(schema["gone"] == "t")
        try harness.database.query("INSERT INTO myapp_customer (name, email) VALUES ('Bea', 'bea@example.com')")
        let names = try harness.database.query("SELECT name FROM myapp_customer ORDER BY id").rows.map { $0["name"] }
        #expect(names == ["Ada", "Bea"])

        let again = try runCommand(["uninstall", "--yes"], databaseURL: harness.database.url)
        #expect(again.status == 0)
        #expect(again.output.contains("nothing to remove"))
        let plannedAgain = try runCommand(["uninstall"], databaseURL: harness.database.url)
        #expect(plannedAgain.status == 2)
        #expect(plannedAgain.output.contains("  nothing: the action_triggers schema does not exist"))
    }
}
