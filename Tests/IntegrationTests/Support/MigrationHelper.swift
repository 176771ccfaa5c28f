import ActionTriggersService
import Logging
import PostgresClient

/// Applies the bundled migrations in-process, for tests that need the schema without a service.
enum MigrationHelper {
    @discardableResult
    static func migrate(_ connection: PostgresConnection) throws -> [Int] {
        try Migrator.migrate(connection, logger: Logger(component: "test-migrate", level: .warning))
    }
}
