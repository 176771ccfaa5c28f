import Foundation
import Logging
import PostgresClient

/// Applies the numbered SQL files in `sql/` that the database has not seen yet.
///
/// Each file runs in its own transaction and is recorded in
/// `action_triggers.schema_migration`. A session advisory lock keeps two instances
/// from migrating at once, so running `migrate` again, or from several instances, is safe.
public struct Migrator {
    public struct Migration: Sendable {
        public let version: Int
        public let name: String
        public let sql: String
    }

    private static let lockKey = "action_triggers.migrate"

    /// Returns the migrations shipped with this build, in version order.
    public static func bundledMigrations() throws -> [Migration] {
        guard let directory = Bundle.module.url(forResource: "sql", withExtension: nil) else {
            throw ServiceError.startup("the sql/ resource directory is missing from the build")
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
            .filter { $0.hasSuffix(".sql") }
            .sorted()
        return try files.map { file in
            guard let version = Int(file.prefix { $0.isNumber }) else {
                throw ServiceError.startup("migration file \(file) does not start with a version number")
            }
            let sql = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
            return Migration(version: version, name: file, sql: sql)
        }
    }

    /// Applies pending migrations; returns the versions applied now.
    @discardableResult
    public static func migrate(_ connection: PostgresConnection, logger: Logger) throws -> [Int] {
        let migrations = try bundledMigrations()
        try connection.query("SELECT pg_advisory_lock(hashtext($1))", [lockKey])
        defer { _ = try? connection.query("SELECT pg_advisory_unlock(hashtext($1))", [lockKey]) }

        try connection.execute("""
            SET client_min_messages = warning;
            CREATE SCHEMA IF NOT EXISTS action_triggers;
            CREATE TABLE IF NOT EXISTS action_triggers.schema_migration (
                version integer PRIMARY KEY,
                name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            );
            """)
        let applied = Set(try connection.query("SELECT version FROM action_triggers.schema_migration").rows.map {
            try $0.int("version")
        })
        if let newest = applied.max(), let known = migrations.last?.version, newest > known {
            throw ServiceError.startup(
                "the database schema is at version \(newest), newer than this build knows (\(known)); upgrade the service")
        }

        var appliedNow: [Int] = []
        for migration in migrations where !applied.contains(migration.version) {
            try connection.transaction { connection in
                try connection.execute(migration.sql)
                try connection.query(
                    "INSERT INTO action_triggers.schema_migration (version, name) VALUES ($1, $2)",
                    [String(migration.version), migration.name])
            }
            logger.info("applied migration", ["migration.version": migration.version, "migration.name": migration.name])
            appliedNow.append(migration.version)
        }
        return appliedNow
    }
}
