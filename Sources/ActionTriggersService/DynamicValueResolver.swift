import ActionTriggersCore
import Foundation
import PostgresClient
import Synchronization

/// Resolves `{{ name }}` placeholders of webhook headers and broker settings at delivery time.
///
/// Resolved values are cached for each value's `cache_secs` and never logged: errors
/// name the dynamic value and its source, not what it resolved to.
final class DynamicValueResolver: Sendable {
    private struct CachedValue {
        let value: String
        let expires: ContinuousClock.Instant
    }

    private let definitions: [String: DynamicValue]
    private let cache = Mutex<[String: CachedValue]>([:])

    /// The maximum run time of a `sql` source query, so a slow query cannot stall deliveries for long.
    static let queryTimeoutMilliseconds = 5000

    init(definitions: [String: DynamicValue]) {
        self.definitions = definitions
    }

    /// Returns `text` with every `{{ name }}` replaced by the named value.
    func resolve(_ text: String, connection: PostgresConnection) throws(DynamicValueError) -> String {
        guard text.contains("{{") else {
            return text
        }
        return try DynamicValue.substitute(in: text) { name throws(DynamicValueError) in
            try value(of: name, connection: connection)
        }
    }

    private func value(of name: String, connection: PostgresConnection) throws(DynamicValueError) -> String {
        let now = ContinuousClock.now
        if let cached = cache.withLock({ $0[name] }), cached.expires > now {
            return cached.value
        }
        guard let definition = definitions[name] else {
            throw DynamicValueError(
                message: "dynamic value \(name) is not in dynamic_values of the settings file; add it there or remove it from the config")
        }

        let value = try fetch(name, definition.source, connection: connection)
        if definition.cacheSeconds > 0 {
            let expires = now + .milliseconds(Int64(definition.cacheSeconds * 1000))
            cache.withLock { $0[name] = CachedValue(value: value, expires: expires) }
        }
        return value
    }

    private func fetch(_ name: String, _ source: DynamicValue.Source, connection: PostgresConnection) throws(DynamicValueError) -> String {
        switch source {
        case .environment(let variable):
            guard let value = ProcessInfo.processInfo.environment[variable] else {
                throw DynamicValueError(message: "dynamic value \(name): environment variable \(variable) is not set")
            }
            return value
        case .file(let path):
            do {
                let contents = try String(contentsOfFile: path, encoding: .utf8)
                return String(contents.reversed().drop { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }.reversed())
            } catch {
                throw DynamicValueError(message: "dynamic value \(name): file \(path) could not be read: \(error.localizedDescription)")
            }
        case .sql:
            return try query(name, source, connection: connection)
        }
    }

    private func query(_ name: String, _ source: DynamicValue.Source, connection: PostgresConnection) throws(DynamicValueError) -> String {
        guard case .sql(let sql) = source else {
            throw DynamicValueError(message: "dynamic value \(name) has no query")
        }
        let result: PostgresResult
        do {
            result = try connection.transaction { connection in
                try connection.execute(
                    "SET TRANSACTION READ ONLY; SET LOCAL statement_timeout = \(Self.queryTimeoutMilliseconds)")
                return try connection.query(sql)
            }
        } catch {
            throw DynamicValueError(message: "dynamic value \(name): query failed: \(error)")
        }
        guard let row = result.rows.first, let value = row.values.first else {
            throw DynamicValueError(message: "dynamic value \(name): query returned no row")
        }
        guard let value else {
            throw DynamicValueError(message: "dynamic value \(name): query returned NULL")
        }
        return value
    }
}

/// A dynamic value that could not be resolved; the message never contains a resolved value.
struct DynamicValueError: Error, CustomStringConvertible {
    let message: String

    var description: String { message }
}
