@testable import ActionTriggersService
import Logging
import PostgresClient
import Testing

/// A database migrated by an earlier build is upgraded in place, with its rows kept.
@Suite("Migration upgrade", .serialized)
struct MigrationUpgradeTests {
    @Test("version 1 database upgrades and keeps rows")
    func upgradeFromVersionOne() throws {
        let harness = try Harness()
        let connection = try harness.database.connect()
        try connection.execute("SET client_min_messages = warning")
        let migrations = try Migrator.bundledMigrations()
        let first = try #require(migrations.first)
        #expect(first.version == 1)

        // The state an earlier build leaves: migration 1 applied and recorded, with an
        // event, its delivery and an attempt.
        try connection.execute("""
            CREATE SCHEMA action_triggers;
            CREATE TABLE action_triggers.schema_migration (
                version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());
            """)
        try connection.execute(first.sql)
        try connection.query("INSERT INTO action_triggers.schema_migration (version, name) VALUES (1, $1)", [first.name])
        // Two old events: one whose delivery succeeded, one whose delivery is pending.
        try connection.execute("""
            INSERT INTO action_triggers.event (table_oid, signal, operation, new_row, dispatched_at)
            SELECT 'myapp_customer'::regclass, 'post_save', 'INSERT', jsonb_build_object('id', n), now() - interval '30 days'
            FROM generate_series(1, 2) AS n;
            INSERT INTO action_triggers.delivery (event_id, config_id, webhook_id, url, http_method, headers, status)
            SELECT id, 1, 1, 'http://127.0.0.1:1/hook', 'POST', '{}',
                   CASE WHEN new_row ->> 'id' = '1' THEN 'succeeded' ELSE 'pending' END
            FROM action_triggers.event;
            INSERT INTO action_triggers.delivery_attempt (delivery_id, attempt, started_at, duration_ms, outcome)
            SELECT id, 1, now(), 1.5, 'succeeded' FROM action_triggers.delivery;
            """)

        let applied = try MigrationHelper.migrate(connection)

        #expect(applied == migrations.dropFirst().map(\.version))
        for table in ["event", "delivery", "delivery_attempt"] {
            let kept = try connection.query("SELECT count(*) AS n FROM action_triggers.\(table)").singleRow().int("n")
            #expect(kept == 2, "action_triggers.\(table) has \(kept) rows after the upgrade")
        }
        let foreignKeys = try connection.query("""
            SELECT count(*) AS n FROM pg_constraint
            WHERE contype = 'f'
              AND conrelid IN ('action_triggers.delivery'::regclass, 'action_triggers.delivery_attempt'::regclass)
            """).singleRow().int("n")
        #expect(foreignKeys == 0)
        let duePredicate = try connection.query(
            "SELECT pg_get_expr(indpred, indrelid) AS predicate FROM pg_index WHERE indexrelid = 'action_triggers.delivery_due'::regclass"
        ).singleRow().string("predicate")
        #expect(duePredicate.contains("target"), "\(duePredicate)")

        // Retention deletes the finished event with its delivery and attempt, through
        // the delete triggers that replace the cascades, and keeps the pending one.
        let deleted = try connection.query(
            "SELECT action_triggers.delete_old_events(now() - interval '1 day', 100) AS deleted").singleRow().int("deleted")
        #expect(deleted == 1)
        for table in ["event", "delivery", "delivery_attempt"] {
            let remaining = try connection.query("SELECT count(*) AS n FROM action_triggers.\(table)").singleRow().int("n")
            #expect(remaining == 1, "action_triggers.\(table) has \(remaining) rows after retention")
        }

        // Deleting an event by hand deletes its delivery and attempt too.
        try connection.query("DELETE FROM action_triggers.event")
        for table in ["delivery", "delivery_attempt"] {
            let remaining = try connection.query("SELECT count(*) AS n FROM action_triggers.\(table)").singleRow().int("n")
            #expect(remaining == 0, "action_triggers.\(table) kept \(remaining) rows of a deleted event")
        }
    }
}

/// Retention in SQL: which events `action_triggers.delete_old_events` deletes.
@Suite("Retention in SQL", .serialized)
struct RetentionSQLTests {
    @Test("old finished events go in batches")
    func oldFinishedEventsDeleted() throws {
        let harness = try Harness()
        let connection = try harness.database.connect()
        try connection.execute("SET client_min_messages = warning")
        try MigrationHelper.migrate(connection)

        // 30 old events whose deliveries succeeded, then one old event whose delivery
        // is still pending, then 5 recent ones.
        try connection.execute("""
            INSERT INTO action_triggers.event (table_oid, signal, operation, new_row, dispatched_at)
            SELECT 'myapp_customer'::regclass, 'post_save', 'INSERT', jsonb_build_object('id', n),
                   now() - interval '30 days'
            FROM generate_series(1, 31) AS n;
            INSERT INTO action_triggers.event (table_oid, signal, operation, new_row, dispatched_at)
            SELECT 'myapp_customer'::regclass, 'post_save', 'INSERT', jsonb_build_object('id', n), now()
            FROM generate_series(32, 36) AS n;
            INSERT INTO action_triggers.delivery (event_id, config_id, webhook_id, url, http_method, headers, status)
            SELECT id, 1, 1, 'http://127.0.0.1:1/hook', 'POST', '{}',
                   CASE WHEN (new_row ->> 'id')::int = 31 THEN 'pending' ELSE 'succeeded' END
            FROM action_triggers.event;
            INSERT INTO action_triggers.delivery_attempt (delivery_id, attempt, started_at, duration_ms, outcome)
            SELECT id, 1, now(), 1.0, 'succeeded' FROM action_triggers.delivery WHERE status = 'succeeded';
            """)

        var counts: [Int] = []
        for _ in 0..<10 {
            let deleted = try connection.query(
                "SELECT action_triggers.delete_old_events(now() - interval '1 day', 10) AS deleted"
            ).singleRow().int("deleted")
            counts.append(deleted)
            if deleted == 0 {
                break
            }
        }

        #expect(counts == [10, 10, 10, 0])
        let remaining = try connection.query(
            "SELECT string_agg(new_row ->> 'id', ',' ORDER BY id) AS ids FROM action_triggers.event").singleRow()
        #expect(remaining["ids"] == "31,32,33,34,35,36")
        #expect(try connection.query("SELECT count(*) AS n FROM action_triggers.delivery").singleRow().int("n") == 6)
        #expect(try connection.query("SELECT count(*) AS n FROM action_triggers.delivery_attempt").singleRow().int("n") == 5)
    }
}
