import ActionTriggersCore
import RedisClient

/// Publishes messages to Redis, reusing one connection per server, database and user.
///
/// Owned by the broker worker's thread. A connection that fails is closed, and the
/// next message to that server opens a new one.
final class RedisPublisher {
    /// Everything a connection was opened with, password included, so a changed or
    /// wrong password is never served by a connection that another broker opened.
    private struct ServerKey: Hashable {
        let host: String
        let port: Int
        let database: Int
        let username: String?
        let password: String?
    }

    private var connections: [ServerKey: RedisConnection] = [:]

    /// The outcome of a publish that Redis accepted.
    enum Published {
        case stream
        /// PUBLISH reached this many subscribers; 0 means the message was not received.
        case channel(receivers: Int64)
    }

    /// Publishes one message; `fields` are the metadata and attributes of a stream entry.
    func publish(
        _ body: [UInt8], to target: RedisTarget, fields: [(String, String)], timeout: Duration
    ) throws(RedisPublishError) -> Published {
        let key = ServerKey(
            host: target.host, port: target.port, database: target.database, username: target.username,
            password: target.password)
        let connection = try connection(for: key, target: target, timeout: timeout)
        connection.setTimeout(timeout)

        let arguments: [[UInt8]]
        switch target.destination {
        case .channel(let channel):
            arguments = [Array("PUBLISH".utf8), Array(channel.utf8), body]
        case .stream(let stream, let maxLength):
            var command = [Array("XADD".utf8), Array(stream.utf8)]
            if let maxLength {
                command += [Array("MAXLEN".utf8), Array("~".utf8), Array(String(maxLength).utf8)]
            }
            command += [Array("*".utf8), Array("payload".utf8), body]
            for (name, value) in fields {
                command += [Array(name.utf8), Array(value.utf8)]
            }
            arguments = command
        }

        let reply: RedisReply
        do {
            reply = try connection.command(arguments)
        } catch {
            connections[key] = nil
            throw RedisPublishError(message: error.message)
        }
        switch (target.destination, reply) {
        case (.channel, .integer(let receivers)):
            return .channel(receivers: receivers)
        case (.stream, .string):
            return .stream
        case (_, .error(let message)):
            throw RedisPublishError(message: "Redis rejected the message: \(message)")
        default:
            connections[key] = nil
            throw RedisPublishError(message: "Redis sent an unexpected reply: \(reply)")
        }
    }

    /// Returns the open connection to a server, or opens one, authenticates and selects the database.
    private func connection(for key: ServerKey, target: RedisTarget, timeout: Duration) throws(RedisPublishError) -> RedisConnection {
        if let connection = connections[key] {
            return connection
        }
        do {
            let connection = try RedisConnection(host: target.host, port: target.port, timeout: timeout)
            if let password = target.password {
                let arguments = [target.username, password].compactMap { $0 }.map { Array($0.utf8) }
                if case .error(let message) = try connection.command([Array("AUTH".utf8)] + arguments) {
                    throw RedisPublishError(message: "Redis at \(target.host):\(target.port) rejected AUTH: \(message)")
                }
            }
            if target.database != 0, case .error(let message) = try connection.command("SELECT", String(target.database)) {
                throw RedisPublishError(message: "Redis at \(target.host):\(target.port) rejected SELECT \(target.database): \(message)")
            }
            connections[key] = connection
            return connection
        } catch let error as RedisError {
            throw RedisPublishError(message: error.message)
        } catch let error as RedisPublishError {
            throw error
        } catch {
            throw RedisPublishError(message: String(describing: error))
        }
    }
}

/// A publish that failed; the message never contains the password.
struct RedisPublishError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}
