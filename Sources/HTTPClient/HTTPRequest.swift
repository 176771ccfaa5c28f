/// One header field; names keep the case the caller gave.
public struct HTTPHeader: Sendable, Equatable {
    public var name: String
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// An outgoing HTTP request.
public struct HTTPRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: [HTTPHeader]
    public var body: [UInt8]
    /// The limit for the whole exchange: connect, send, wait and receive.
    public var timeout: Duration
    /// A PEM file of CA certificates to verify the server with instead of the system's.
    public var caBundle: String?

    public init(
        method: String, url: String, headers: [HTTPHeader] = [], body: [UInt8] = [], timeout: Duration,
        caBundle: String? = nil
    ) {
        self.caBundle = caBundle
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
    }
}

/// A response received from the server, whatever its status.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [HTTPHeader]
    /// The start of the body, at most `HTTPClient.maxResponseBodyBytes` bytes.
    public var body: [UInt8]
    public var duration: Duration

    public init(status: Int, headers: [HTTPHeader], body: [UInt8], duration: Duration) {
        self.status = status
        self.headers = headers
        self.body = body
        self.duration = duration
    }

    /// Returns the last value of a header, matching the name case-insensitively.
    public func header(_ name: String) -> String? {
        let lowered = name.lowercased()
        return headers.last { $0.name.lowercased() == lowered }?.value
    }
}

/// A request that got no HTTP response.
public struct HTTPClientError: Error, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// The request did not complete within its timeout.
        case timeout
        /// The connection could not be opened, or broke before a response arrived.
        case connection
        /// libcurl rejected the request itself, for example an unsupported URL scheme.
        case invalidRequest
        case other
    }

    public let kind: Kind
    public let message: String
    public let duration: Duration

    public var description: String { "\(kind.rawValue): \(message)" }
}
