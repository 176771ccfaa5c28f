import ActionTriggersCore
import RabbitMQClient

/// Publishes messages to RabbitMQ, reusing one connection per server, virtual host and user.
///
/// Owned by the broker worker's thread. A connection that fails is closed, and the
/// next message to that server opens a new one.
final class RabbitMQPublisher {
    /// Everything a connection was opened with, password included, so a changed or
    /// wrong password is never served by a connection that another broker opened.
    private struct ServerKey: Hashable {
        let host: String
        let port: Int
        let virtualHost: String
        let username: String
        let password: String
    }

    private var connections: [ServerKey: RabbitMQConnection] = [:]

    /// Publishes one persistent message and waits for the broker's confirm.
    func publish(
        _ body: [UInt8], to target: RabbitMQTarget, messageID: String, headers: [(String, String)], timeout: Duration
    ) throws(RabbitMQError) {
        let key = ServerKey(
            host: target.host, port: target.port, virtualHost: target.virtualHost, username: target.username,
            password: target.password)
        let connection: RabbitMQConnection
        if let open = connections[key] {
            connection = open
        } else {
            connection = try RabbitMQConnection(
                host: target.host, port: target.port, virtualHost: target.virtualHost, username: target.username,
                password: target.password, timeout: timeout)
            connections[key] = connection
        }
        do {
            try connection.publish(
                exchange: target.exchange, routingKey: target.routingKey, body: body, messageID: messageID,
                headers: headers, timeout: timeout)
        } catch {
            if !error.connectionUsable {
                connections[key] = nil
            }
            throw error
        }
    }
}
