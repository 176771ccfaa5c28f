import CHTTPServerShim
import Foundation

/// An HTTP/1.1 server on GNU libmicrohttpd with a thread pool and fixed limits.
///
/// Every request, body included, is handed to one handler on a pool thread. Bodies
/// over `maxBodyBytes` are dropped and flagged on the request, so the handler can
/// return 413 without the server buffering them.
// `@unchecked Sendable` is safe: the handle is set once in init, and libmicrohttpd's
// stop function may be called from any thread.
public final class HTTPServer: @unchecked Sendable {
    public struct Limits: Sendable {
        public var threads: Int = 4
        public var maxConnections: Int = 1024
        /// Seconds of inactivity after which a connection is closed.
        public var connectionTimeout: Int = 30
        public var maxBodyBytes: Int = 1 << 20

        public init() {}
    }

    public struct StartError: Error, CustomStringConvertible {
        public let description: String
    }

    private let handle: OpaquePointer
    private let context: Unmanaged<HandlerBox>
    public let port: Int

    /// Starts listening on `host:port`; port 0 picks a free port, reported by `port`.
    public init(
        host: String, port: Int, limits: Limits = Limits(), handler: @escaping @Sendable (HTTPServerRequest) -> HTTPServerResponse
    ) throws {
        let context = Unmanaged.passRetained(HandlerBox(handler))
        var error = [CChar](repeating: 0, count: 256)
        let started = at_http_start(
            host, UInt16(clamping: port), UInt32(limits.threads), UInt32(limits.maxConnections),
            UInt32(limits.connectionTimeout), limits.maxBodyBytes, handleRequest, context.toOpaque(), &error, error.count)
        guard let started else {
            context.release()
            let message = String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw StartError(description: message)
        }
        self.handle = started
        self.context = context
        self.port = Int(at_http_port(started))
    }

    /// Stops accepting connections and waits for running handlers; call it once.
    public func stop() {
        at_http_stop(handle)
        context.release()
    }
}

/// The handler, reached from C through an opaque pointer.
private final class HandlerBox: Sendable {
    let handler: @Sendable (HTTPServerRequest) -> HTTPServerResponse

    init(_ handler: @escaping @Sendable (HTTPServerRequest) -> HTTPServerResponse) {
        self.handler = handler
    }
}

private let handleRequest: at_http_handler = { context, request, response in
    guard let context, let request, let response else { return }
    let box = Unmanaged<HandlerBox>.fromOpaque(context).takeUnretainedValue()
    let raw = request.pointee

    var headers: [String: String] = [:]
    for index in 0..<raw.header_count {
        let pair = raw.headers[index]
        headers[String(cString: pair.name).lowercased()] = String(cString: pair.value)
    }
    var query: [(name: String, value: String)] = []
    for index in 0..<raw.query_count {
        let pair = raw.query[index]
        query.append((String(cString: pair.name), String(cString: pair.value)))
    }
    let body = raw.body_length > 0 ? Array(UnsafeBufferPointer(start: raw.body, count: raw.body_length)) : []
    let incoming = HTTPServerRequest(
        method: String(cString: raw.method), path: String(cString: raw.path), headers: headers, query: query,
        body: body, bodyTooLarge: raw.body_too_large != 0)

    let reply = box.handler(incoming)

    response.pointee.status = UInt32(reply.status)
    if !reply.body.isEmpty {
        if let memory = malloc(reply.body.count) {
            let buffer = memory.assumingMemoryBound(to: UInt8.self)
            buffer.initialize(from: reply.body, count: reply.body.count)
            response.pointee.body = buffer
            response.pointee.body_length = reply.body.count
        }
    }
    let lines = reply.headers
        .filter { !$0.name.contains(where: \.isNewline) && !$0.value.contains(where: \.isNewline) }
        .map { "\($0.name): \($0.value)\n" }
        .joined()
    response.pointee.headers = strdup(lines)
}
