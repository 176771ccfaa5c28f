import ActionTriggersCore
import HTTPServer
import PostgresClient

/// Copies the allowlists of the settings file into `action_triggers.setting`.
///
/// The SQL functions read them from there, so a config saved through SQL is checked
/// against the same allowlists as one saved through the API. With several instances,
/// the one that started last wins, so all instances should share one settings file.
enum SettingsPublisher {
    static func publish(_ settings: Settings, to connection: PostgresConnection) throws {
        for (index, pattern) in (settings.whitelistedWebhookEndpointPatterns ?? []).enumerated() {
            let row = try connection.query("SELECT action_triggers.pattern_error($1) AS problem", [pattern]).singleRow()
            if let problem = row["problem"] {
                throw ServiceError.configuration(
                    "invalid settings: whitelisted_webhook_endpoint_patterns[\(index)] is not a valid PostgreSQL regular expression (\(problem)): \(pattern)")
            }
        }

        let values: [(String, String?)] = [
            ("whitelisted_content_types", settings.whitelistedContentTypes.map(jsonArray)),
            ("whitelisted_webhook_endpoint_patterns", settings.whitelistedWebhookEndpointPatterns.map(jsonArray)),
            ("brokers", brokerCatalog(settings.brokers)),
            ("dynamic_value_names", jsonArray(settings.dynamicValues.keys.sorted())),
            ("max_webhook_timeout", String(settings.maxWebhookTimeout)),
        ]
        try connection.transaction { connection in
            for (key, value) in values {
                if let value {
                    try connection.query("""
                        INSERT INTO action_triggers.setting (key, value) VALUES ($1, $2::jsonb)
                        ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()
                        """, [key, value])
                } else {
                    try connection.query("DELETE FROM action_triggers.setting WHERE key = $1", [key])
                }
            }
        }
    }

    /// Describes each broker by its type and the keys it sets, never their values,
    /// which may be secrets.
    private static func brokerCatalog(_ brokers: [String: BrokerDefinition]) -> String {
        var catalog = JSONObject()
        for (name, broker) in brokers.sorted(by: { $0.key < $1.key }) {
            catalog.append(name, .object([
                "broker_type": .string(broker.type.rawValue),
                "conn_details": .array(broker.connDetails.keys.map(JSONValue.string)),
                "params": .array(broker.params.keys.map(JSONValue.string)),
                "connection_keys": broker.type.connectionKeys.map { .array($0.map(JSONValue.string)) } ?? .null,
            ]))
        }
        return JSONValue.object(catalog).jsonText
    }

    private static func jsonArray(_ strings: [String]) -> String {
        "[" + strings.map(jsonString).joined(separator: ",") + "]"
    }
}
