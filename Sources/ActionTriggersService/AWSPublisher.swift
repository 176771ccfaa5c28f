import AWSClient
import ActionTriggersCore
import Foundation
import HTTPClient

/// Sends messages to SQS (SendMessage) and SNS (Publish) over their query APIs,
/// signed with Signature Version 4 and sent with libcurl.
///
/// Owned by the broker worker's thread; requests run one at a time. Queue URLs
/// found by name are cached.
final class AWSPublisher {
    private let http: BlockingHTTP
    private var queueURLs: [String: String] = [:]

    init(http: BlockingHTTP) {
        self.http = http
    }

    /// A message and the metadata that become its attributes.
    struct Message {
        let body: [UInt8]
        let messageID: String
        /// The message group of a FIFO queue or topic: the model and primary key unless configured.
        let groupID: String
        let attributes: [(String, String)]
    }

    func publish(_ message: Message, to target: AWSTarget, service: BrokerType, timeout: Duration) throws(AWSPublishError) {
        let environment = ProcessInfo.processInfo.environment
        guard let region = target.region ?? environment["AWS_REGION"] ?? environment["AWS_DEFAULT_REGION"]
            ?? Self.region(of: target.destination)
        else {
            throw AWSPublishError(
                retryable: false,
                message: "no AWS region: set region_name in conn_details, or AWS_REGION for the service")
        }
        guard let credentials = Self.credentials(target, environment: environment) else {
            throw AWSPublishError(
                retryable: false,
                message: "no AWS credentials: set aws_access_key_id and aws_secret_access_key in conn_details, "
                    + "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the service")
        }
        let serviceName = service == .awsSQS ? "sqs" : "sns"
        let endpoint = target.endpointURL ?? "https://\(serviceName).\(region).amazonaws.com"
        let signer = SignatureV4(credentials: credentials, region: region, service: serviceName)

        var parameters: [(String, String)]
        switch target.destination {
        case .topicARN(let arn):
            parameters = [("Action", "Publish"), ("Version", "2010-03-31"), ("TopicArn", arn),
                          ("Message", String(decoding: message.body, as: UTF8.self))]
            for (index, attribute) in message.attributes.enumerated() {
                let prefix = "MessageAttributes.entry.\(index + 1)"
                parameters += [("\(prefix).Name", attribute.0), ("\(prefix).Value.DataType", "String"),
                               ("\(prefix).Value.StringValue", attribute.1)]
            }
        case .queueURL, .queueName:
            let queueURL = try queueURL(of: target, endpoint: endpoint, signer: signer, timeout: timeout)
            parameters = [("Action", "SendMessage"), ("Version", "2012-11-05"), ("QueueUrl", queueURL),
                          ("MessageBody", String(decoding: message.body, as: UTF8.self))]
            for (index, attribute) in message.attributes.enumerated() {
                let prefix = "MessageAttribute.\(index + 1)"
                parameters += [("\(prefix).Name", attribute.0), ("\(prefix).Value.DataType", "String"),
                               ("\(prefix).Value.StringValue", attribute.1)]
            }
        }
        if target.isFIFO {
            parameters += [("MessageGroupId", target.messageGroupID ?? message.groupID),
                           ("MessageDeduplicationId", message.messageID)]
        }
        _ = try send(parameters, to: endpoint, signer: signer, timeout: timeout)
    }

    /// Returns the URL of the target's queue, asking SQS for it by name once.
    private func queueURL(
        of target: AWSTarget, endpoint: String, signer: SignatureV4, timeout: Duration
    ) throws(AWSPublishError) -> String {
        switch target.destination {
        case .queueURL(let url):
            return url
        case .queueName(let name):
            let key = "\(endpoint) \(name)"
            if let url = queueURLs[key] {
                return url
            }
            let response = try send(
                [("Action", "GetQueueUrl"), ("Version", "2012-11-05"), ("QueueName", name)], to: endpoint, signer: signer,
                timeout: timeout)
            guard let url = Self.element("QueueUrl", in: response) else {
                throw AWSPublishError(retryable: true, message: "GetQueueUrl for \(name) returned no QueueUrl")
            }
            queueURLs[key] = url
            return url
        case .topicARN(let arn):
            return arn
        }
    }

    /// Sends one signed form POST and returns the body of a 2xx response.
    private func send(
        _ parameters: [(String, String)], to endpoint: String, signer: SignatureV4, timeout: Duration
    ) throws(AWSPublishError) -> String {
        guard let url = URL(string: endpoint), let host = url.host else {
            throw AWSPublishError(retryable: false, message: "endpoint_url \(endpoint) is not a valid URL")
        }
        let hostHeader = url.port.map { "\(host):\($0)" } ?? host
        let body = SignatureV4.formBody(parameters)
        var headers = [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"), ("Host", hostHeader)]
        headers += signer.sign(
            method: "POST", path: url.path.isEmpty ? "/" : url.path, headers: headers, body: body,
            amzDate: Self.amzDate(Date()))

        let action = parameters.first?.1 ?? "request"
        let request = HTTPRequest(
            method: "POST", url: endpoint, headers: headers.map { HTTPHeader($0.0, $0.1) }, body: body, timeout: timeout)
        let response: HTTPResponse
        do {
            response = try http.send(request)
        } catch {
            throw AWSPublishError(retryable: error.kind != .invalidRequest, message: "\(action) failed: \(error.message)")
        }
        let text = String(decoding: response.body, as: UTF8.self)
        guard (200...299).contains(response.status) else {
            let code = Self.element("Code", in: text) ?? "no error code"
            let detail = Self.element("Message", in: text) ?? ""
            throw AWSPublishError(
                retryable: Self.isRetryable(status: response.status, code: code),
                message: "\(action) failed: HTTP \(response.status) \(code): \(detail)")
        }
        return text
    }

    /// Error codes AWS sends with a 400 for throttling, which a later attempt survives.
    static let throttlingCodes: Set = [
        "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled", "RequestThrottledException",
        "TooManyRequestsException", "RequestLimitExceeded", "RequestTimeout", "RequestTimeoutException",
    ]

    /// Returns whether a failed request is worth another attempt. Server errors, 408, 429
    /// and throttling are, but other client errors (a wrong key, a missing queue) are
    /// not, as for webhooks.
    static func isRetryable(status: Int, code: String) -> Bool {
        status >= 500 || status == 408 || status == 429 || throttlingCodes.contains(code)
    }

    private static func credentials(_ target: AWSTarget, environment: [String: String]) -> AWSCredentials? {
        if let accessKeyID = target.accessKeyID, let secret = target.secretAccessKey {
            return AWSCredentials(accessKeyID: accessKeyID, secretAccessKey: secret, sessionToken: target.sessionToken)
        }
        guard let accessKeyID = environment["AWS_ACCESS_KEY_ID"], let secret = environment["AWS_SECRET_ACCESS_KEY"] else {
            return nil
        }
        return AWSCredentials(
            accessKeyID: accessKeyID, secretAccessKey: secret, sessionToken: environment["AWS_SESSION_TOKEN"])
    }

    /// Returns the region inside an SQS URL (`https://sqs.eu-west-1.amazonaws.com/...`) or an SNS ARN.
    private static func region(of destination: AWSTarget.Destination) -> String? {
        switch destination {
        case .topicARN(let arn):
            let parts = arn.split(separator: ":", omittingEmptySubsequences: false)
            return parts.count > 3 && !parts[3].isEmpty ? String(parts[3]) : nil
        case .queueURL(let url):
            guard let host = URL(string: url)?.host, host.hasPrefix("sqs.") else {
                return nil
            }
            return host.split(separator: ".").dropFirst().first.map(String.init)
        case .queueName:
            return nil
        }
    }

    /// Returns the text of the first `<name>` element of an XML response.
    private static func element(_ name: String, in xml: String) -> String? {
        guard let start = xml.range(of: "<\(name)>"), let end = xml.range(of: "</\(name)>", range: start.upperBound..<xml.endIndex)
        else {
            return nil
        }
        return String(xml[start.upperBound..<end.lowerBound])
            .replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&apos;", with: "'")
            .replacingOccurrences(of: "&amp;", with: "&")
    }

    /// Formats a time as Signature Version 4 writes it, `20150830T123600Z`.
    private static func amzDate(_ date: Date) -> String {
        var seconds = time_t(date.timeIntervalSince1970)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(
            format: "%04d%02d%02dT%02d%02d%02dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
            Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec))
    }
}

/// A send that failed; `retryable` is false when no later attempt can succeed.
struct AWSPublishError: Error, CustomStringConvertible {
    let retryable: Bool
    let message: String
    var description: String { message }
}
