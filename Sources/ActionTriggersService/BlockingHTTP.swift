import HTTPClient

/// Sends one HTTP request at a time and waits for its response, for the broker
/// thread's calls to HTTP APIs (SQS, SNS, Pub/Sub and token endpoints).
final class BlockingHTTP {
    private let client = HTTPClient(maxConnectionsPerHost: 4, userAgent: "action-triggers/\(Version.current)")
    private var nextTag = 0

    /// Returns the response, or throws when the request could not be sent or timed out.
    func send(_ request: HTTPRequest) throws(HTTPClientError) -> HTTPResponse {
        let tag = nextTag
        nextTag &+= 1
        if let failure = client.start(request, tag: tag) {
            throw failure
        }
        while true {
            for completion in client.poll(timeout: .milliseconds(100)) where completion.tag == tag {
                return try completion.result.get()
            }
        }
    }
}
