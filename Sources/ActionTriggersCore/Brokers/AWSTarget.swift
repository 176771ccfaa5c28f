/// An SQS queue or SNS topic, with the endpoint, region and credentials to reach it.
public struct AWSTarget: Sendable, Equatable {
    public enum Destination: Sendable, Equatable {
        case queueURL(String)
        /// A queue name, resolved to its URL with GetQueueUrl.
        case queueName(String)
        case topicARN(String)
    }

    public var destination: Destination
    /// `endpoint_url`, such as a local SQS-compatible server; nil for AWS's own endpoint.
    public var endpointURL: String?
    /// `region_name`; nil to use `AWS_REGION`, `AWS_DEFAULT_REGION` or the queue URL or topic ARN.
    public var region: String?
    public var accessKeyID: String?
    public var secretAccessKey: String?
    public var sessionToken: String?
    /// `message_group_id` for FIFO queues and topics; nil to use the model and primary key.
    public var messageGroupID: String?
    /// Parameters other than the destination and group: message attributes.
    public var attributes: [(key: String, value: String)] = []

    /// The largest message SQS and SNS accept, body and attributes together, in bytes.
    public static let maxMessageBytes = 262_144
    /// The maximum number of message attributes SQS and SNS accept on one message.
    public static let maxAttributes = 10

    public static func == (lhs: AWSTarget, rhs: AWSTarget) -> Bool {
        lhs.destination == rhs.destination && lhs.endpointURL == rhs.endpointURL && lhs.region == rhs.region
            && lhs.accessKeyID == rhs.accessKeyID && lhs.secretAccessKey == rhs.secretAccessKey
            && lhs.sessionToken == rhs.sessionToken && lhs.messageGroupID == rhs.messageGroupID
            && lhs.attributes.map(\.key) == rhs.attributes.map(\.key)
            && lhs.attributes.map(\.value) == rhs.attributes.map(\.value)
    }

    /// Returns whether a text has the shape of an SNS topic ARN, `arn:<partition>:sns:<region>:<account>:<name>`.
    static func isTopicARN(_ text: String) -> Bool {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        return parts.count >= 6 && parts[0] == "arn" && parts[2] == "sns" && !parts[5].isEmpty
    }

    /// Whether the queue or topic is FIFO, which needs a message group and deduplication id.
    public var isFIFO: Bool {
        switch destination {
        case .queueURL(let text), .queueName(let text), .topicARN(let text): text.hasSuffix(".fifo")
        }
    }

    /// Builds a target from settings that `problem` accepted.
    init(connDetails: JSONObject, params: JSONObject) {
        if let url = params["queue_url"]?.text {
            destination = .queueURL(url)
        } else if let name = params["queue_name"]?.text {
            destination = .queueName(name)
        } else {
            destination = .topicARN(params["topic_arn"]?.text ?? "")
        }
        endpointURL = connDetails["endpoint_url"]?.text
        region = connDetails["region_name"]?.text
        accessKeyID = connDetails["aws_access_key_id"]?.text
        secretAccessKey = connDetails["aws_secret_access_key"]?.text
        sessionToken = connDetails["aws_session_token"]?.text
        messageGroupID = params["message_group_id"]?.text
        let known: Set = ["queue_url", "queue_name", "topic_arn", "message_group_id"]
        for member in params.members where !known.contains(member.key) {
            attributes.append((member.key, member.value.text ?? ""))
        }
    }

    static func problem(type: BrokerType, connDetails: JSONObject, params: JSONObject, merged: Bool) -> BrokerTarget.Problem? {
        let known = type.connectionKeys ?? []
        for member in connDetails.members {
            let path = "conn_details.\(member.key)"
            guard known.contains(member.key) else {
                return .init(path: path, message: "is not an AWS connection setting; known: \(known.joined(separator: ", "))")
            }
            guard case .string(let text) = member.value, !text.isEmpty else {
                return .init(path: path, message: "must be a non-empty string")
            }
            if member.key == "endpoint_url", !text.contains("{{"), !(text.hasPrefix("http://") || text.hasPrefix("https://")) {
                return .init(path: path, message: "must be an http:// or https:// URL")
            }
        }
        if (connDetails["aws_access_key_id"] == nil) != (connDetails["aws_secret_access_key"] == nil) && merged {
            return .init(
                path: "conn_details.aws_secret_access_key",
                message: "give aws_access_key_id and aws_secret_access_key together, or neither to use the AWS_* environment variables")
        }
        for member in params.members {
            guard member.value.isScalarText, member.value.text?.isEmpty == false else {
                return .init(path: "params.\(member.key)", message: "must be a non-empty string or a number")
            }
        }

        if case .string(let arn)? = params["topic_arn"], !arn.contains("{{"), !Self.isTopicARN(arn) {
            return .init(path: "params.topic_arn", message: "must be an SNS topic ARN, such as arn:aws:sns:eu-west-1:123456789012:orders")
        }
        let attributeCount = params.keys.filter { !["queue_url", "queue_name", "topic_arn", "message_group_id"].contains($0) }.count
        if attributeCount > maxAttributes - 4 {
            return .init(
                path: "params",
                message: "has \(attributeCount) message attributes besides message_id, event_id, signal and model; SQS and SNS take at most \(maxAttributes) in all")
        }

        let destinations = type == .awsSQS ? ["queue_url", "queue_name"] : ["topic_arn"]
        let given = destinations.filter { params[$0] != nil }
        if given.count > 1 {
            return .init(path: "params.\(given[1])", message: "give either queue_url or queue_name, not both")
        }
        if merged && given.isEmpty {
            let needed = type == .awsSQS ? "a queue_url or a queue_name" : "a topic_arn"
            return .init(path: "params.\(destinations[0])", message: "an \(type.rawValue) broker needs \(needed)")
        }
        return nil
    }
}
