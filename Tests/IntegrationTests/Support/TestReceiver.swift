import Dispatch
import Foundation
import Glibc
import Synchronization

/// An HTTP/1.1 server on 127.0.0.1 that records every request and sends queued responses,
/// so integration tests can receive the webhooks the service sends.
///
/// One thread accepts connections and each connection gets its own thread, so a delayed
/// response never holds up another connection. Connections stay open between requests
/// (keep-alive) unless the request or the response carries `Connection: close`.
/// Malformed requests get a 4xx or 5xx response, are logged to standard error and are
/// not recorded. Linux only, because it uses `SOCK_CLOEXEC`, `SOCK_NONBLOCK` and `MSG_NOSIGNAL`.
final class TestReceiver: Sendable {
    /// A canned response for one request.
    struct Response: Sendable {
        var status: Int
        /// Header fields sent as given. Unless a field is present here, the receiver adds
        /// `Content-Length` (except to 204 and 304 responses) and, for a non-empty body,
        /// `Content-Type: text/plain; charset=utf-8`.
        var headers: [(name: String, value: String)]
        var body: String
        /// Time between receiving the whole request and sending this response.
        var delay: Duration

        init(
            status: Int = 200,
            headers: [(name: String, value: String)] = [],
            body: String = "",
            delay: Duration = .zero
        ) {
            precondition(
                (200...999).contains(status),
                "Response status must be a final status code (200 through 999), got \(status)"
            )
            self.status = status
            self.headers = headers
            self.body = body
            self.delay = delay
        }
    }

    /// TCP port that the kernel assigned to the listening socket.
    let port: Int

    /// URL of the receiver without a trailing slash, for example "http://127.0.0.1:40321".
    var baseURL: String { "http://127.0.0.1:\(port)" }

    private let server: ReceiverServer

    /// Binds a listening socket on 127.0.0.1 with a port that the kernel chooses and starts
    /// accepting connections on a background thread.
    ///
    /// - Throws: `TestReceiverError.systemCallFailed` when creating the stop pipe or the
    ///   listening socket fails.
    init() throws {
        server = try ReceiverServer()
        port = server.port
        server.start()
    }

    deinit {
        server.stop()
    }

    /// Snapshot of the requests received so far, in the order they completed.
    var requests: [ReceivedRequest] {
        server.state.withLock { $0.requests }
    }

    /// Number of TCP connections accepted so far.
    ///
    /// A connection is counted when `accept` returns, before any byte is read. A connection
    /// that the kernel has completed but that still waits in the listen backlog is not
    /// counted yet.
    var connectionCount: Int {
        server.state.withLock { $0.connectionCount }
    }

    /// Response sent when the queue is empty. Initially status 200 with body "ok".
    var defaultResponse: Response {
        get { server.state.withLock { $0.defaultResponse } }
        set { server.state.withLock { $0.defaultResponse = newValue } }
    }

    /// Appends a response to the queue. Each request that completes takes the first queued
    /// response, across all connections.
    func enqueue(_ response: Response) {
        server.state.withLock { $0.queuedResponses.append(response) }
    }

    /// Waits until at least `count` requests have been received and returns all requests
    /// received by then.
    ///
    /// Checks every 10 ms.
    /// - Throws: `TestReceiverError.timedOut` listing the requests that arrived, or
    ///   `CancellationError` when the task is cancelled.
    func waitForRequests(count: Int, timeout: Duration) async throws -> [ReceivedRequest] {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout

        while true {
            let received = requests
            if received.count >= count {
                return received
            }
            if clock.now >= deadline {
                throw TestReceiverError.timedOut(
                    expectedCount: count,
                    receivedRequestLines: received.map { "\($0.method) \($0.target)" },
                    timeout: timeout
                )
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Closes the listening socket and every connection, and waits for all receiver threads
    /// to end.
    ///
    /// A response that is waiting out its `delay` is not sent. Calling `stop()` again does
    /// nothing. `deinit` calls it too.
    func stop() {
        server.stop()
    }
}

/// One HTTP request that `TestReceiver` received.
struct ReceivedRequest: Sendable {
    let method: String
    /// Request target as sent, for example "/hooks/7?attempt=2".
    let target: String
    /// HTTP version from the request line, "HTTP/1.1" or "HTTP/1.0".
    let version: String
    /// Header fields in the order received, with names spelled as sent. Trailer fields of
    /// a chunked body are not included.
    let headers: [(name: String, value: String)]
    /// Body after removing the chunked transfer coding, if any.
    let body: [UInt8]
    /// Time when the receiver finished reading the request, body included.
    let receivedAt: ContinuousClock.Instant
    /// Number of the TCP connection that carried the request, counting from 1 in accept order.
    /// Requests with the same number reused one keep-alive connection.
    let connectionNumber: Int

    /// `target` without the query, for example "/hooks/7".
    var path: String {
        String(target.prefix { $0 != "?" })
    }

    /// Part of `target` after the first "?", or nil when there is no "?".
    var query: String? {
        guard let questionMark = target.firstIndex(of: "?") else {
            return nil
        }
        return String(target[target.index(after: questionMark)...])
    }

    /// Body decoded as UTF-8, with invalid bytes replaced by U+FFFD.
    var bodyText: String {
        String(decoding: body, as: UTF8.self)
    }

    /// Returns the values of every header field named `name`, compared case-insensitively.
    func headerValues(_ name: String) -> [String] {
        let lowercasedName = name.lowercased()
        return headers.filter { $0.name.lowercased() == lowercasedName }.map(\.value)
    }

    /// Returns the value of the header field named `name`, compared case-insensitively, or
    /// nil when it is missing. Repeated fields are joined with ", " as RFC 9110 section 5.3
    /// allows.
    func header(_ name: String) -> String? {
        let values = headerValues(name)
        return values.isEmpty ? nil : values.joined(separator: ", ")
    }
}

/// Errors that `TestReceiver` throws.
enum TestReceiverError: Error, CustomStringConvertible {
    /// A system call made while starting the receiver failed with `errno`.
    case systemCallFailed(call: String, errno: Int32)
    /// Fewer than `expectedCount` requests arrived within `timeout`.
    case timedOut(expectedCount: Int, receivedRequestLines: [String], timeout: Duration)

    var description: String {
        switch self {
        case .systemCallFailed(let call, let code):
            let reason = String(cString: strerror(code))
            return "TestReceiver failed to start: \(call) failed with errno \(code) (\(reason))."
        case .timedOut(let expectedCount, let receivedRequestLines, let timeout):
            var message = "TestReceiver timed out after \(timeout) waiting for \(expectedCount) requests."
            message += " Received \(receivedRequestLines.count)"
            if !receivedRequestLines.isEmpty {
                message += ": " + receivedRequestLines.joined(separator: ", ")
            }
            return message + "."
        }
    }
}

// MARK: - Server threads

/// Sockets, threads and shared state of a `TestReceiver`.
///
/// Threads keep this object alive instead of the `TestReceiver`, so that dropping the last
/// reference to the receiver runs its `deinit`, which stops them.
private final class ReceiverServer: Sendable {
    struct State {
        var requests: [ReceivedRequest] = []
        var queuedResponses: [TestReceiver.Response] = []
        var defaultResponse = TestReceiver.Response(status: 200, body: "ok")
        var connectionCount = 0
        var isStopped = false
    }

    let state = Mutex(State())
    let port: Int

    /// Non-blocking listening socket. The accept thread closes it when it ends.
    private let listeningSocket: Int32

    /// Read end of the stop pipe. `stop()` closes the write end, which makes this descriptor
    /// report POLLHUP to every thread that polls it, so one close wakes all threads.
    private let stopSignal: Int32
    private let stopSignalWriteEnd: Int32

    /// Group that every receiver thread enters before it starts and leaves when it ends.
    private let threads = DispatchGroup()

    init() throws {
        // Glibc's module map hides pipe2 and accept4, which need _GNU_SOURCE, so the receiver
        // sets FD_CLOEXEC with fcntl afterwards.
        var pipeEnds: [Int32] = [-1, -1]
        guard pipe(&pipeEnds) == 0 else {
            throw TestReceiverError.systemCallFailed(call: "pipe", errno: errno)
        }
        _ = fcntl(pipeEnds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(pipeEnds[1], F_SETFD, FD_CLOEXEC)

        do {
            let (socket, port) = try Self.makeListeningSocket()
            self.listeningSocket = socket
            self.port = port
        } catch {
            close(pipeEnds[0])
            close(pipeEnds[1])
            throw error
        }
        stopSignal = pipeEnds[0]
        stopSignalWriteEnd = pipeEnds[1]
    }

    /// Creates a non-blocking TCP socket listening on 127.0.0.1 with a kernel-chosen port.
    private static func makeListeningSocket() throws -> (socket: Int32, port: Int) {
        let socketType = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
        let listeningSocket = socket(AF_INET, socketType, 0)
        guard listeningSocket >= 0 else {
            throw TestReceiverError.systemCallFailed(call: "socket(AF_INET, SOCK_STREAM)", errno: errno)
        }

        func fail(_ call: String) -> TestReceiverError {
            let error = TestReceiverError.systemCallFailed(call: call, errno: errno)
            close(listeningSocket)
            return error
        }

        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr = in_addr(s_addr: in_addr_t(0x7F00_0001).bigEndian)
        let bindResult = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                bind(listeningSocket, socketAddress, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bindResult == 0 else {
            throw fail("bind to 127.0.0.1:0")
        }

        guard listen(listeningSocket, 128) == 0 else {
            throw fail("listen on 127.0.0.1")
        }

        var boundAddress = sockaddr_in()
        var boundAddressLength = socklen_t(MemoryLayout<sockaddr_in>.size)
        let nameResult = withUnsafeMutablePointer(to: &boundAddress) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                getsockname(listeningSocket, socketAddress, &boundAddressLength)
            }
        }
        guard nameResult == 0 else {
            throw fail("getsockname")
        }

        return (listeningSocket, Int(UInt16(bigEndian: boundAddress.sin_port)))
    }

    func start() {
        threads.enter()
        let thread = Thread { [self] in
            acceptConnections()
        }
        thread.name = "TestReceiver accept :\(port)"
        thread.start()
    }

    func stop() {
        let isFirstCall = state.withLock { state in
            defer { state.isStopped = true }
            return !state.isStopped
        }
        if isFirstCall {
            close(stopSignalWriteEnd)
        }

        threads.wait()

        // Only the first caller closes the read end, after every thread that polls it has ended.
        if isFirstCall {
            close(stopSignal)
        }
    }

    private func acceptConnections() {
        defer {
            close(listeningSocket)
            threads.leave()
        }

        while true {
            var pollDescriptors = [
                pollfd(fd: listeningSocket, events: Int16(POLLIN), revents: 0),
                pollfd(fd: stopSignal, events: Int16(POLLIN), revents: 0),
            ]
            guard poll(&pollDescriptors, 2, -1) >= 0 else {
                if errno == EINTR {
                    continue
                }
                log("poll on the listening socket failed: \(errnoText(errno)). No more connections are accepted.")
                return
            }
            if pollDescriptors[1].revents != 0 {
                return
            }

            let connectionSocket = accept(listeningSocket, nil, nil)
            guard connectionSocket >= 0 else {
                let code = errno
                switch code {
                case EAGAIN, EWOULDBLOCK, EINTR, ECONNABORTED:
                    continue
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    log("accept failed: \(errnoText(code)). Retrying in 10 ms.")
                    if !sleepUnlessStopped(for: .milliseconds(10)) {
                        return
                    }
                    continue
                default:
                    log("accept failed: \(errnoText(code)). No more connections are accepted.")
                    return
                }
            }

            // NOTE: A process that a test spawns between accept and this fcntl inherits the
            // socket and keeps the connection open until that process exits.
            _ = fcntl(connectionSocket, F_SETFD, FD_CLOEXEC)

            let connectionNumber = state.withLock { state in
                state.connectionCount += 1
                return state.connectionCount
            }

            threads.enter()
            let thread = Thread { [self] in
                serveConnection(socket: connectionSocket, number: connectionNumber)
            }
            thread.name = "TestReceiver connection \(connectionNumber)"
            thread.start()
        }
    }

    /// Reads requests on one connection and sends their responses until either side closes
    /// the connection or the receiver stops.
    private func serveConnection(socket: Int32, number: Int) {
        defer {
            close(socket)
            threads.leave()
        }

        var connection = HTTPConnection(socket: socket, stopSignal: stopSignal)
        do {
            while true {
                guard let request = try connection.readRequest() else {
                    return
                }

                let received = ReceivedRequest(
                    method: request.method,
                    target: request.target,
                    version: request.version,
                    headers: request.headers,
                    body: request.body,
                    receivedAt: .now,
                    connectionNumber: number
                )
                let response = state.withLock { state in
                    state.requests.append(received)
                    if state.queuedResponses.isEmpty {
                        return state.defaultResponse
                    }
                    return state.queuedResponses.removeFirst()
                }

                if response.delay > .zero, !sleepUnlessStopped(for: response.delay) {
                    return
                }

                let closesConnection = !request.keepsConnectionOpen || response.hasConnectionCloseField
                let bytes = response.encoded(
                    omittingBody: request.method == "HEAD",
                    closesConnection: closesConnection,
                    announcesKeepAlive: request.version == "HTTP/1.0"
                )
                try connection.send(bytes)

                if closesConnection {
                    connection.closeAfterSending()
                    return
                }
            }
        } catch let ConnectionEnd.rejected(status, reason) {
            log("connection \(number): rejected request with status \(status): \(reason)")
            let response = TestReceiver.Response(status: status, body: reason + "\n")
            let bytes = response.encoded(omittingBody: false, closesConnection: true, announcesKeepAlive: false)
            if (try? connection.send(bytes)) != nil {
                connection.closeAfterSending()
            }
        } catch {
            // The client closed the connection or the receiver is stopping, so nothing is left to send.
        }
    }

    /// Waits for `duration` and returns true, or returns false as soon as `stop()` is called.
    private func sleepUnlessStopped(for duration: Duration) -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now + duration

        while true {
            let remaining = deadline - clock.now
            if remaining <= .zero {
                return true
            }
            var pollDescriptor = pollfd(fd: stopSignal, events: Int16(POLLIN), revents: 0)
            let result = poll(&pollDescriptor, 1, pollTimeoutMilliseconds(remaining))
            if result > 0 {
                return false
            }
            if result < 0, errno != EINTR {
                log("poll on the stop pipe failed: \(errnoText(errno)). Continuing without the rest of the \(duration) wait.")
                return true
            }
        }
    }

    private func log(_ message: String) {
        FileHandle.standardError.write(Data("TestReceiver 127.0.0.1:\(port): \(message)\n".utf8))
    }
}

// MARK: - HTTP/1.1 parsing

/// Reasons that a connection thread stops reading requests.
private enum ConnectionEnd: Error {
    /// The client closed or reset the connection.
    case closedByClient
    /// `stop()` was called.
    case stopped
    /// The request is invalid or unsupported, so the receiver sends `status` and closes.
    case rejected(status: Int, reason: String)
}

/// A request as parsed from the connection, before `ReceiverServer` records it.
private struct ParsedRequest {
    var method: String
    var target: String
    var version: String
    var headers: [(name: String, value: String)]
    var body: [UInt8]
    var keepsConnectionOpen: Bool
}

/// Buffered reader and writer for one accepted socket.
private struct HTTPConnection {
    /// Maximum size in bytes of the request line and header fields together. Trailer fields
    /// get a separate limit of the same size.
    static let maxHeaderSectionBytes = 64 * 1024
    static let maxBodyBytes = 16 * 1024 * 1024
    static let maxChunkSizeLineBytes = 1024

    private static let carriageReturn = UInt8(ascii: "\r")
    private static let lineFeed = UInt8(ascii: "\n")

    let socket: Int32
    let stopSignal: Int32
    private var buffer: [UInt8] = []
    private var readIndex = 0

    init(socket: Int32, stopSignal: Int32) {
        self.socket = socket
        self.stopSignal = stopSignal
    }

    /// Reads the next request, including its whole body, or returns nil when the client closes
    /// the connection between requests.
    ///
    /// Sends `100 Continue` before reading the body when an HTTP/1.1 request carries
    /// `Expect: 100-continue`.
    mutating func readRequest() throws -> ParsedRequest? {
        discardConsumedBytes()

        var headerBytesLeft = Self.maxHeaderSectionBytes
        var requestLine: [UInt8]
        // RFC 9112 section 2.2 recommends that a server ignore empty lines before the request line.
        repeat {
            guard let line = try readLine(maxLength: headerBytesLeft, tooLong: Self.headerSectionTooLarge) else {
                return nil
            }
            requestLine = line
            headerBytesLeft -= line.count + 2
        } while requestLine.isEmpty

        var request = try Self.parseRequestLine(requestLine)
        request.headers = try readFields(byteBudget: &headerBytesLeft)

        let connectionOptions = request.headers
            .filter { $0.name.lowercased() == "connection" }
            .flatMap { Self.commaSeparatedTokens($0.value) }
        if request.version == "HTTP/1.1" {
            request.keepsConnectionOpen = !connectionOptions.contains("close")
        } else {
            request.keepsConnectionOpen = connectionOptions.contains("keep-alive")
        }

        try readBody(into: &request)
        return request
    }

    private static let headerSectionTooLarge = ConnectionEnd.rejected(
        status: 431,
        reason: "The request line and header fields exceed \(maxHeaderSectionBytes) bytes."
    )

    private static func parseRequestLine(_ line: [UInt8]) throws -> ParsedRequest {
        let parts = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        let text = String(decoding: line, as: UTF8.self)
        guard parts.count == 3, !parts[1].isEmpty, parts[0].allSatisfy(isTokenCharacter), !parts[0].isEmpty else {
            throw ConnectionEnd.rejected(status: 400, reason: "Invalid request line \"\(text)\".")
        }

        let version = String(decoding: parts[2], as: UTF8.self)
        guard version == "HTTP/1.1" || version == "HTTP/1.0" else {
            let status = version.hasPrefix("HTTP/") ? 505 : 400
            throw ConnectionEnd.rejected(status: status, reason: "Unsupported HTTP version in request line \"\(text)\".")
        }

        return ParsedRequest(
            method: String(decoding: parts[0], as: UTF8.self),
            target: String(decoding: parts[1], as: UTF8.self),
            version: version,
            headers: [],
            body: [],
            keepsConnectionOpen: false
        )
    }

    /// Reads header or trailer fields up to and including the empty line that ends them.
    private mutating func readFields(byteBudget: inout Int) throws -> [(name: String, value: String)] {
        var fields: [(name: String, value: String)] = []
        while true {
            guard let line = try readLine(maxLength: byteBudget, tooLong: Self.headerSectionTooLarge) else {
                throw ConnectionEnd.closedByClient
            }
            byteBudget -= line.count + 2
            if line.isEmpty {
                return fields
            }
            fields.append(try Self.parseField(line))
        }
    }

    private static func parseField(_ line: [UInt8]) throws -> (name: String, value: String) {
        let text = String(decoding: line, as: UTF8.self)
        // A leading space or tab is obsolete line folding, which RFC 9112 section 5.2 lets a
        // server reject with 400.
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")),
              colon > 0,
              line[..<colon].allSatisfy(isTokenCharacter)
        else {
            throw ConnectionEnd.rejected(status: 400, reason: "Invalid header field \"\(text)\".")
        }

        let isWhitespace = { (byte: UInt8) in byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
        var value = line[(colon + 1)...].drop(while: isWhitespace)
        while let last = value.last, isWhitespace(last) {
            value = value.dropLast()
        }
        return (String(decoding: line[..<colon], as: UTF8.self), String(decoding: value, as: UTF8.self))
    }

    /// Reads the body that the framing headers announce, following RFC 9112 section 6.3.
    /// Transfer-Encoding takes precedence over Content-Length, and a request with neither
    /// has no body.
    private mutating func readBody(into request: inout ParsedRequest) throws {
        let headers = request.headers
        func values(_ name: String) -> [String] {
            headers.filter { $0.name.lowercased() == name }.map(\.value)
        }

        let transferEncodings = values("transfer-encoding")
        let transferCodings = transferEncodings.flatMap(Self.commaSeparatedTokens)
        // Empty elements stay in, so that an empty Content-Length is rejected as invalid.
        let contentLengths = values("content-length").flatMap { value in
            value.split(separator: ",", omittingEmptySubsequences: false)
                .map { $0.trimmingCharacters(in: .whitespaces) }
        }
        let expectsContinue = request.version == "HTTP/1.1"
            && values("expect").contains { $0.lowercased() == "100-continue" }

        if !transferEncodings.isEmpty {
            guard transferCodings == ["chunked"] else {
                throw ConnectionEnd.rejected(
                    status: 501,
                    reason: "Unsupported Transfer-Encoding \"\(transferEncodings.joined(separator: ", "))\". Only chunked is supported."
                )
            }
            // A request with both framings may be an attempt at request smuggling, so RFC 9112
            // section 6.1 requires closing the connection after the response.
            if !contentLengths.isEmpty {
                request.keepsConnectionOpen = false
            }
            if expectsContinue {
                try sendContinue()
            }
            request.body = try readChunkedBody()
            return
        }

        guard let firstLength = contentLengths.first else {
            return
        }
        guard contentLengths.allSatisfy({ $0 == firstLength }),
              !firstLength.isEmpty,
              firstLength.allSatisfy({ $0.isASCII && $0.isNumber })
        else {
            throw ConnectionEnd.rejected(
                status: 400,
                reason: "Invalid Content-Length \"\(contentLengths.joined(separator: ", "))\"."
            )
        }
        // Int(_:) returns nil for a value too large for Int, which is also too large to accept.
        guard let length = Int(firstLength), length <= Self.maxBodyBytes else {
            throw ConnectionEnd.rejected(
                status: 413,
                reason: "Content-Length \(firstLength) exceeds the maximum body size of \(Self.maxBodyBytes) bytes."
            )
        }
        if expectsContinue, length > 0 {
            try sendContinue()
        }
        request.body = try readBytes(count: length)
    }

    private mutating func sendContinue() throws {
        try send(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))
    }

    /// Reads chunks up to the last (zero-size) chunk, then reads and discards the trailer fields.
    private mutating func readChunkedBody() throws -> [UInt8] {
        var body: [UInt8] = []
        while true {
            let invalidSizeLine = ConnectionEnd.rejected(
                status: 400,
                reason: "Chunk size line exceeds \(Self.maxChunkSizeLineBytes) bytes."
            )
            guard let sizeLine = try readLine(maxLength: Self.maxChunkSizeLineBytes, tooLong: invalidSizeLine) else {
                throw ConnectionEnd.closedByClient
            }

            // The size is hexadecimal and may be followed by ";name=value" chunk extensions.
            let sizeDigits = sizeLine.prefix { $0 != UInt8(ascii: ";") }
                .filter { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") }
            let sizeText = String(decoding: sizeDigits, as: UTF8.self)
            guard !sizeText.isEmpty,
                  sizeText.count <= 15,
                  sizeText.allSatisfy(\.isHexDigit),
                  let size = Int(sizeText, radix: 16)
            else {
                throw ConnectionEnd.rejected(
                    status: 400,
                    reason: "Invalid chunk size line \"\(String(decoding: sizeLine, as: UTF8.self))\"."
                )
            }
            if size == 0 {
                break
            }
            guard body.count + size <= Self.maxBodyBytes else {
                throw ConnectionEnd.rejected(
                    status: 413,
                    reason: "Chunked body exceeds the maximum body size of \(Self.maxBodyBytes) bytes."
                )
            }

            body += try readBytes(count: size)
            try readLineEnd()
        }

        var trailerBytesLeft = Self.maxHeaderSectionBytes
        _ = try readFields(byteBudget: &trailerBytesLeft)
        return body
    }

    /// Reads the CRLF (or bare LF) that must follow chunk data.
    private mutating func readLineEnd() throws {
        var byte = try readBytes(count: 1)[0]
        if byte == Self.carriageReturn {
            byte = try readBytes(count: 1)[0]
        }
        guard byte == Self.lineFeed else {
            throw ConnectionEnd.rejected(status: 400, reason: "Chunk data is longer than its chunk size.")
        }
    }

    /// Returns the lowercased, trimmed, non-empty elements of a comma-separated field value.
    private static func commaSeparatedTokens(_ value: String) -> [String] {
        value.split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            .filter { !$0.isEmpty }
    }

    /// Returns whether `byte` may appear in a method or field name (`tchar` in RFC 9110 section 5.6.2).
    private static func isTokenCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"):
            return true
        default:
            return Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
        }
    }

    // MARK: Socket input and output

    /// Reads one line without its CRLF or bare LF terminator.
    ///
    /// Returns nil when the client closes the connection before sending any byte of the line.
    /// - Throws: `tooLong` when the line exceeds `maxLength` bytes, and
    ///   `ConnectionEnd.closedByClient` when the connection closes in the middle of the line.
    private mutating func readLine(maxLength: Int, tooLong: ConnectionEnd) throws -> [UInt8]? {
        var searchStart = readIndex
        while true {
            if let lineFeedIndex = buffer[searchStart...].firstIndex(of: Self.lineFeed) {
                var lineEnd = lineFeedIndex
                if lineEnd > readIndex, buffer[lineEnd - 1] == Self.carriageReturn {
                    lineEnd -= 1
                }
                guard lineEnd - readIndex <= maxLength else {
                    throw tooLong
                }
                let line = Array(buffer[readIndex..<lineEnd])
                readIndex = lineFeedIndex + 1
                return line
            }

            searchStart = buffer.count
            guard buffer.count - readIndex <= maxLength else {
                throw tooLong
            }
            guard try receiveMore() else {
                if readIndex == buffer.count {
                    return nil
                }
                throw ConnectionEnd.closedByClient
            }
        }
    }

    private mutating func readBytes(count: Int) throws -> [UInt8] {
        while buffer.count - readIndex < count {
            guard try receiveMore() else {
                throw ConnectionEnd.closedByClient
            }
        }
        let bytes = Array(buffer[readIndex..<(readIndex + count)])
        readIndex += count
        return bytes
    }

    private mutating func discardConsumedBytes() {
        buffer.removeFirst(readIndex)
        readIndex = 0
    }

    /// Appends the bytes available on the socket to `buffer`, waiting until at least one byte
    /// arrives. Returns false at end of stream.
    private mutating func receiveMore() throws -> Bool {
        try waitUntilReady(events: POLLIN)

        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let received = chunk.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if received > 0 {
                buffer.append(contentsOf: chunk[..<received])
                return true
            }
            if received == 0 {
                return false
            }
            switch errno {
            case EINTR:
                continue
            case EAGAIN, EWOULDBLOCK:
                try waitUntilReady(events: POLLIN)
            default:
                throw ConnectionEnd.closedByClient
            }
        }
    }

    /// Sends all of `bytes`. `MSG_NOSIGNAL` turns a write to a connection that the client
    /// closed into an EPIPE error instead of a SIGPIPE that would end the test process.
    mutating func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { pending in
                Glibc.send(socket, pending.baseAddress, pending.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
            }
            if sent >= 0 {
                offset += sent
                continue
            }
            switch errno {
            case EINTR:
                continue
            case EAGAIN, EWOULDBLOCK:
                try waitUntilReady(events: POLLOUT)
            default:
                throw ConnectionEnd.closedByClient
            }
        }
    }

    /// Shuts down the sending side and discards input until the client closes, for at most
    /// one second.
    ///
    /// Closing a socket with unread input makes the kernel send RST, which can destroy the
    /// response before the client reads it. Draining first avoids that.
    mutating func closeAfterSending() {
        shutdown(socket, Int32(SHUT_WR))

        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(1)
        var discarded = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let remaining = deadline - clock.now
            guard remaining > .zero else {
                return
            }
            var pollDescriptors = [
                pollfd(fd: socket, events: Int16(POLLIN), revents: 0),
                pollfd(fd: stopSignal, events: Int16(POLLIN), revents: 0),
            ]
            let ready = poll(&pollDescriptors, 2, pollTimeoutMilliseconds(remaining))
            if ready < 0, errno == EINTR {
                continue
            }
            guard ready > 0, pollDescriptors[1].revents == 0 else {
                return
            }
            let received = discarded.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if received == 0 || (received < 0 && errno != EINTR && errno != EAGAIN) {
                return
            }
        }
    }

    /// Waits until the socket reports `events` (or an error or hangup).
    /// - Throws: `ConnectionEnd.stopped` when `stop()` is called first.
    private func waitUntilReady(events: Int32) throws {
        while true {
            var pollDescriptors = [
                pollfd(fd: socket, events: Int16(events), revents: 0),
                pollfd(fd: stopSignal, events: Int16(POLLIN), revents: 0),
            ]
            let ready = poll(&pollDescriptors, 2, -1)
            if ready < 0 {
                if errno == EINTR {
                    continue
                }
                throw ConnectionEnd.closedByClient
            }
            if pollDescriptors[1].revents != 0 {
                throw ConnectionEnd.stopped
            }
            if pollDescriptors[0].revents != 0 {
                return
            }
        }
    }
}

// MARK: - Response encoding

extension TestReceiver.Response {
    /// Returns whether the response's own header fields contain `Connection: close`.
    fileprivate var hasConnectionCloseField: Bool {
        headers.contains { field in
            field.name.lowercased() == "connection"
                && field.value.split(separator: ",").contains { $0.trimmingCharacters(in: .whitespaces).lowercased() == "close" }
        }
    }

    /// Serializes the status line, header fields and body.
    ///
    /// 204 and 304 responses never carry a body or Content-Length. A response to HEAD gets
    /// the Content-Length of the body it would have had, but no body.
    fileprivate func encoded(omittingBody: Bool, closesConnection: Bool, announcesKeepAlive: Bool) -> [UInt8] {
        let allowsBody = status != 204 && status != 304
        let bodyBytes = Array(body.utf8)
        let presentNames = Set(headers.map { $0.name.lowercased() })

        var head = "HTTP/1.1 \(status) \(Self.reasonPhrase(for: status))\r\n"
        for field in headers {
            head += "\(field.name): \(field.value)\r\n"
        }
        if allowsBody, !presentNames.contains("content-length") {
            head += "Content-Length: \(bodyBytes.count)\r\n"
        }
        if allowsBody, !bodyBytes.isEmpty, !presentNames.contains("content-type") {
            head += "Content-Type: text/plain; charset=utf-8\r\n"
        }
        if !presentNames.contains("connection") {
            if closesConnection {
                head += "Connection: close\r\n"
            } else if announcesKeepAlive {
                head += "Connection: keep-alive\r\n"
            }
        }
        head += "\r\n"

        var bytes = Array(head.utf8)
        if allowsBody, !omittingBody {
            bytes += bodyBytes
        }
        return bytes
    }

    private static func reasonPhrase(for status: Int) -> String {
        switch status {
        case 200: "OK"
        case 201: "Created"
        case 202: "Accepted"
        case 204: "No Content"
        case 301: "Moved Permanently"
        case 302: "Found"
        case 304: "Not Modified"
        case 307: "Temporary Redirect"
        case 308: "Permanent Redirect"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 409: "Conflict"
        case 410: "Gone"
        case 413: "Content Too Large"
        case 415: "Unsupported Media Type"
        case 422: "Unprocessable Content"
        case 429: "Too Many Requests"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        case 505: "HTTP Version Not Supported"
        default: "Status \(status)"
        }
    }
}

// MARK: - Helpers

/// Converts `duration` to a poll(2) timeout, rounding up so a wait never ends early.
private func pollTimeoutMilliseconds(_ duration: Duration) -> Int32 {
    let (seconds, attoseconds) = duration.components
    let attosecondsPerMillisecond: Int64 = 1_000_000_000_000_000
    let milliseconds = seconds.multipliedReportingOverflow(by: 1000)
    guard !milliseconds.overflow else {
        return Int32.max
    }
    let roundedUp = (attoseconds + attosecondsPerMillisecond - 1) / attosecondsPerMillisecond
    return Int32(clamping: milliseconds.partialValue + roundedUp)
}

private func errnoText(_ code: Int32) -> String {
    "\(String(cString: strerror(code))) (errno \(code))"
}
