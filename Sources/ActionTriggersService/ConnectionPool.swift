import PostgresClient
import Synchronization

/// A few database connections shared by the HTTP handler threads.
///
/// A connection is used by one thread at a time: `withConnection` takes it out of
/// the pool and puts it back afterwards, or drops it when it failed.
final class ConnectionPool: Sendable {
    /// One pooled connection; `@unchecked Sendable` because only the thread that took it from the pool uses it.
    private final class Entry: @unchecked Sendable {
        let connection: PostgresConnection

        init(_ connection: PostgresConnection) {
            self.connection = connection
        }
    }

    private let conninfo: String
    private let applicationName: String
    private let maxIdle: Int
    private let idle = Mutex<[Entry]>([])

    init(conninfo: String, applicationName: String, maxIdle: Int) {
        self.conninfo = conninfo
        self.applicationName = applicationName
        self.maxIdle = maxIdle
    }

    func withConnection<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        let entry = try idle.withLock { $0.popLast() }
            ?? Entry(PostgresConnection(conninfo: conninfo, applicationName: applicationName))
        do {
            let value = try body(entry.connection)
            giveBack(entry)
            return value
        } catch {
            if entry.connection.isOpen {
                giveBack(entry)
            }
            throw error
        }
    }

    private func giveBack(_ entry: Entry) {
        idle.withLock { entries in
            if entries.count < maxIdle {
                entries.append(entry)
            }
        }
    }
}
