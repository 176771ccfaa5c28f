import Logging
import PostgresClient

/// Removes the service from a database: every capture trigger, then the
/// `action_triggers` schema with the configs, the outbox and the delivery log.
/// The application's tables and rows are left as they are.
public enum Uninstaller {
    /// Drops the triggers and the schema in one transaction and returns the tables
    /// whose capture triggers were dropped; an empty list when nothing was installed.
    public static func uninstall(_ connection: PostgresConnection, logger: Logger) throws -> [String] {
        try connection.transaction { connection in
            let installed = try connection.query(
                "SELECT to_regnamespace('action_triggers') IS NOT NULL AS installed").singleRow().bool("installed")
            guard installed else {
                logger.info("nothing to remove: the action_triggers schema does not exist")
                return []
            }
            // Identifiers are quoted by format(%I) and regclass output.
            let triggers = try connection.query("""
                SELECT t.tgrelid::regclass::text AS table_name,
                       format('DROP TRIGGER %I ON %s', t.tgname, t.tgrelid::regclass) AS statement
                FROM pg_catalog.pg_trigger t
                WHERE t.tgfoid = to_regprocedure('action_triggers.capture()') AND t.tgparentid = 0
                ORDER BY 1, t.tgname
                """)
            var tables: [String] = []
            for row in triggers.rows {
                try connection.execute(try row.string("statement"))
                let table = try row.string("table_name")
                if tables.last != table {
                    tables.append(table)
                }
            }
            try connection.execute("DROP SCHEMA action_triggers CASCADE")
            logger.info("uninstalled", ["tables": tables.joined(separator: ","), "triggers": triggers.rows.count])
            return tables
        }
    }
}
