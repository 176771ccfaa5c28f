import CHiredis

#if canImport(Glibc)
import Glibc
#endif

/// A reply of the Redis protocol.
public indirect enum RedisReply: Sendable, Equatable {
    case string([UInt8])
    case status(String)
    case integer(Int64)
    case array([RedisReply])
    case null
    /// An error reply, such as `WRONGTYPE ...`; the connection stays usable.
    case error(String)

    /// The text of a bulk string or status reply.
    public var text: String? {
        switch self {
        case .string(let bytes): String(decoding: bytes, as: UTF8.self)
        case .status(let text): text
        default: nil
        }
    }
}

public struct RedisError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable {
        /// The server could not be reached or the connection broke; reconnect before the next command.
        case connection
        /// No reply arrived in time; the connection is no longer usable.
        case timeout
    }

    public let kind: Kind
    public let message: String

    public var description: String { message }
}

/// One blocking connection to a Redis server (hiredis), with a timeout on every call.
///
/// Not thread-safe: give each connection one owner. After any `RedisError` the
/// connection is broken and the owner opens a new one.
public final class RedisConnection {
    private let context: UnsafeMutablePointer<redisContext>
    public let host: String
    public let port: Int

    public init(host: String, port: Int, timeout: Duration) throws(RedisError) {
        self.host = host
        self.port = port
        guard let context = redisConnectWithTimeout(host, Int32(port), Self.timeval(timeout)) else {
            throw RedisError(kind: .connection, message: "connecting to Redis at \(host):\(port) failed: out of memory")
        }
        if context.pointee.err != 0 {
            let message = Self.errorText(context)
            redisFree(context)
            throw RedisError(kind: .connection, message: "connecting to Redis at \(host):\(port) failed: \(message)")
        }
        self.context = context
        redisSetTimeout(context, Self.timeval(timeout))
    }

    deinit {
        redisFree(context)
    }

    /// Sets the timeout of each later read and write.
    public func setTimeout(_ timeout: Duration) {
        redisSetTimeout(context, Self.timeval(timeout))
    }

    /// Sends one command and returns its reply; arguments are binary-safe.
    public func command(_ arguments: [[UInt8]]) throws(RedisError) -> RedisReply {
        let lengths = arguments.map(\.count)
        let pointers = arguments.map { argument -> UnsafeMutablePointer<CChar> in
            let pointer = UnsafeMutablePointer<CChar>.allocate(capacity: max(argument.count, 1))
            argument.withUnsafeBytes { bytes in
                if let base = bytes.baseAddress {
                    UnsafeMutableRawPointer(pointer).copyMemory(from: base, byteCount: argument.count)
                }
            }
            return pointer
        }
        defer {
            pointers.forEach { $0.deallocate() }
        }
        var argv = pointers.map { UnsafePointer<CChar>?($0) }
        let raw = argv.withUnsafeMutableBufferPointer { argvBuffer in
            lengths.withUnsafeBufferPointer { lengthBuffer in
                redisCommandArgv(context, Int32(arguments.count), argvBuffer.baseAddress, lengthBuffer.baseAddress)
            }
        }
        return try takeReply(raw, operation: "command \(arguments.first.map { String(decoding: $0, as: UTF8.self) } ?? "")")
    }

    /// Sends one command whose arguments are text.
    public func command(_ arguments: String...) throws(RedisError) -> RedisReply {
        try command(arguments.map { Array($0.utf8) })
    }

    /// Reads the next reply the server pushes, such as a message on a subscribed channel.
    public func readReply() throws(RedisError) -> RedisReply {
        var raw: UnsafeMutableRawPointer?
        _ = redisGetReply(context, &raw)
        return try takeReply(raw, operation: "read")
    }

    private func takeReply(_ raw: UnsafeMutableRawPointer?, operation: String) throws(RedisError) -> RedisReply {
        guard let raw else {
            let timedOut = context.pointee.err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK)
            throw RedisError(
                kind: timedOut ? .timeout : .connection,
                message: timedOut
                    ? "Redis at \(host):\(port) did not reply in time (\(operation))"
                    : "Redis at \(host):\(port) failed (\(operation)): \(Self.errorText(context))")
        }
        defer {
            freeReplyObject(raw)
        }
        return Self.convert(raw.assumingMemoryBound(to: redisReply.self).pointee)
    }

    private static func convert(_ reply: redisReply) -> RedisReply {
        switch reply.type {
        case REDIS_REPLY_STRING:
            return .string(bytes(reply.str, reply.len))
        case REDIS_REPLY_STATUS:
            return .status(String(decoding: bytes(reply.str, reply.len), as: UTF8.self))
        case REDIS_REPLY_ERROR:
            return .error(String(decoding: bytes(reply.str, reply.len), as: UTF8.self))
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(reply.integer))
        case REDIS_REPLY_ARRAY:
            var items: [RedisReply] = []
            for index in 0..<Int(reply.elements) {
                if let element = reply.element[index] {
                    items.append(convert(element.pointee))
                }
            }
            return .array(items)
        default:
            return .null
        }
    }

    private static func bytes(_ pointer: UnsafeMutablePointer<CChar>?, _ length: Int) -> [UInt8] {
        guard let pointer, length > 0 else {
            return []
        }
        return Array(UnsafeRawBufferPointer(start: pointer, count: length))
    }

    private static func errorText(_ context: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: context.pointee.errstr) { buffer in
            String(decoding: buffer.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    private static func timeval(_ duration: Duration) -> Glibc.timeval {
        let (seconds, attoseconds) = duration.components
        return Glibc.timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
    }
}
