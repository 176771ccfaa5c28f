import Logging
import PostgresClient

/// Removes the service from a database: every capture trigger, then the
/// `action_triggers` schema with the configs, the outbox and the delivery log.
/// The application's tables and rows are left as they are.
public enum Uninstaller {
    /// The triggers and schema that an uninstall removes from one database.
    public struct Plan: Sendable {
        /// Whether the `action_triggers` schema exists.
        public var installed: Bool
        /// The capture triggers, ordered by table.
        public var triggers: [Trigger]

        /// The tables that have capture triggers, each once.
        public var tables: [String] {
            var tables: [String] = []
            for trigger in triggers where tables.last != trigger.table {
                tables.append(trigger.table)
            }
            return tables
        }
    }

    /// One capture trigger.
    public struct Trigger: Sendable {
        /// The table, as regclass prints it: schema-qualified and quoted where needed.
        public var table: String
        public var name: String
        /// The DROP TRIGGER statement, with identifiers quoted by format(%I).
        var dropStatement: String
    }

    /// Lists what `uninstall` would remove, without changing anything.
    public static func plan(_ connection: PostgresConnection) throws -> Plan {
        let installed = try connection.query(
            "SELECT to_regnamespace('action_triggers') IS NOT NULL AS installed").singleRow().bool("installed")
        guard installed else {
            return Plan(installed: false, triggers: [])
        }
        let rows = try connection.query("""
            SELECT t.tgrelid::regclass::text AS table_name, t.tgname AS trigger_name,
                   format('DROP TRIGGER %I ON %s', t.tgname, t.tgrelid::regclass) AS statement
            FROM pg_catalog.pg_trigger t
            WHERE t.tgfoid = to_regprocedure('action_triggers.capture()') AND t.tgparentid = 0
            ORDER BY 1, 2
            """)
        let triggers = try rows.rows.map { row in
            Trigger(
                table: try row.string("table_name"), name: try row.string("trigger_name"),
                dropStatement: try row.string("statement"))
        }
        return Plan(installed: true, triggers: triggers)
    }

    /// Drops the triggers and the schema in one transaction and returns the tables
    /// whose capture triggers were dropped; an empty list when nothing was installed.
    public static func uninstall(_ connection: PostgresConnection, logger: Logger) throws -> [String] {
        try connection.transaction { connection in
            let plan = try plan(connection)
            guard plan.installed else {
                logger.info("nothing to remove: the action_triggers schema does not exist")
                return []
            }
            for trigger in plan.triggers {
                try connection.execute(trigger.dropStatement)
            }
            try connection.execute("DROP SCHEMA action_triggers CASCADE")
            logger.info("uninstalled", ["tables": plan.tables.joined(separator: ","), "triggers": plan.triggers.count])
            return plan.tables
        }
    }
}
