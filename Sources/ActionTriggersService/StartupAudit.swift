import ActionTriggersCore
import Foundation
import Logging
import PostgresClient

/// Start-up checks of the stored configs against this instance's settings and
/// environment. Each finding would fail every delivery it touches, so it is logged as
/// a warning before the first row changes.
///
/// It finds webhooks of active configs whose URL the allowlist rejects (saved before
/// the allowlist narrowed), and `env` dynamic values whose variable is not set. Both
/// are allowed at save time on purpose, because they depend on the instance that
/// delivers, so they can only be found here.
enum StartupAudit {
    /// Runs the checks on the start-up connection, after the settings' allowlist is
    /// published, and logs what they find. A database failure is logged and the check
    /// skipped, because the service works without it.
    static func run(_ connection: PostgresConnection, settings: Settings, logger: Logger) {
        for (name, definition) in settings.dynamicValues.sorted(by: { $0.key < $1.key }) {
            if case .environment(let variable) = definition.source, ProcessInfo.processInfo.environment[variable] == nil {
                logger.warning("dynamic value's environment variable is not set; deliveries that use it fail until it is", [
                    "dynamic_value.name": name, "variable": variable,
                ])
            }
        }

        do {
            // webhook_url_error redacts credentials and queries from the URL it names.
            let rejected = try connection.query("""
                SELECT checked.config_id, checked.position, checked.problem
                FROM (SELECT w.config_id, w.position, action_triggers.webhook_url_error(w.url) AS problem
                      FROM action_triggers.webhook w
                      JOIN action_triggers.config c ON c.id = w.config_id
                      WHERE c.active) AS checked
                WHERE checked.problem IS NOT NULL
                ORDER BY checked.config_id, checked.position
                """)
            for row in rejected.rows {
                let configID = try row.int64("config_id")
                let position = try row.int("position")
                let problem = try row.string("problem")
                logger.warning("active config has a webhook that cannot be sent; fix its URL or switch the config off", [
                    "config.id": configID, "webhook.position": position, "error": problem,
                ])
            }
        } catch {
            logger.warning("start-up check of the stored configs failed", ["error": String(describing: error)])
        }
    }
}
