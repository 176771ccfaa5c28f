import CRabbitMQShim

#if canImport(Glibc)
import Glibc
#endif

public struct RabbitMQError: Error, Sendable, CustomStringConvertible {
    /// Whether the connection is still usable: false after a network failure or timeout.
    public let connectionUsable: Bool
    public let message: String

    public var description: String { message }
}

/// A message taken from a queue with basic.get.
public struct RabbitMQMessage: Sendable {
    public let body: [UInt8]
    /// The message id, `delivery_mode` and the string headers.
    public let properties: [String: String]
}

/// One AMQP 0-9-1 connection (rabbitmq-c) with a channel in publisher-confirm mode.
///
/// Not thread-safe: give each connection one owner. After an error with
/// `connectionUsable` false, the owner opens a new connection.
public final class RabbitMQConnection {
    private let connection: OpaquePointer
    public let host: String
    public let port: Int

    public init(
        host: String, port: Int, virtualHost: String, username: String, password: String, timeout: Duration
    ) throws(RabbitMQError) {
        self.host = host
        self.port = port
        var error = [CChar](repeating: 0, count: 512)
        guard let connection = at_amqp_connect(
            host, Int32(port), virtualHost, username, password, Self.milliseconds(timeout), &error, error.count)
        else {
            throw RabbitMQError(
                connectionUsable: false, message: "connecting to RabbitMQ at \(host):\(port) failed: \(Self.text(error))")
        }
        self.connection = connection
    }

    deinit {
        at_amqp_close(connection)
    }

    /// Publishes a persistent message with the mandatory flag and waits for the broker's
    /// confirm, so an unroutable or rejected message is an error, never a success.
    public func publish(
        exchange: String, routingKey: String, body: [UInt8], messageID: String, headers: [(String, String)],
        timeout: Duration
    ) throws(RabbitMQError) {
        var error = [CChar](repeating: 0, count: 512)
        let names = headers.map { strdup($0.0) }
        let values = headers.map { strdup($0.1) }
        defer {
            names.forEach { free($0) }
            values.forEach { free($0) }
        }
        let namePointers = names.map { UnsafePointer<CChar>($0) }
        let valuePointers = values.map { UnsafePointer<CChar>($0) }
        let status = body.withUnsafeBytes { bytes in
            namePointers.withUnsafeBufferPointer { nameBuffer in
                valuePointers.withUnsafeBufferPointer { valueBuffer in
                    at_amqp_publish(
                        connection, exchange, routingKey, bytes.baseAddress, bytes.count, messageID,
                        nameBuffer.baseAddress, valueBuffer.baseAddress, headers.count, Self.milliseconds(timeout),
                        &error, error.count)
                }
            }
        }
        guard status == AT_AMQP_OK else {
            throw RabbitMQError(connectionUsable: status == AT_AMQP_REJECTED, message: Self.text(error))
        }
    }

    /// Declares a durable queue.
    public func declareQueue(_ name: String) throws(RabbitMQError) {
        var error = [CChar](repeating: 0, count: 512)
        guard at_amqp_declare_queue(connection, name, &error, error.count) == AT_AMQP_OK else {
            throw RabbitMQError(connectionUsable: false, message: Self.text(error))
        }
    }

    /// Takes the next message from a queue, or returns nil when it is empty.
    public func get(queue: String) throws(RabbitMQError) -> RabbitMQMessage? {
        var error = [CChar](repeating: 0, count: 512)
        var body: UnsafeMutablePointer<CChar>?
        var size = 0
        var headers: UnsafeMutablePointer<CChar>?
        guard at_amqp_get(connection, queue, &body, &size, &headers, &error, error.count) == AT_AMQP_OK else {
            throw RabbitMQError(connectionUsable: false, message: Self.text(error))
        }
        defer {
            at_amqp_free(body)
            at_amqp_free(headers)
        }
        guard let body else {
            return nil
        }
        var properties: [String: String] = [:]
        for line in (headers.map { String(cString: $0) } ?? "").split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            if parts.count == 2 {
                properties[String(parts[0])] = String(parts[1])
            }
        }
        return RabbitMQMessage(body: Array(UnsafeRawBufferPointer(start: body, count: size)), properties: properties)
    }

    private static func text(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func milliseconds(_ duration: Duration) -> Int32 {
        let (seconds, attoseconds) = duration.components
        return Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000)
    }
}
