/// A Kafka topic with the librdkafka properties of the producer.
public struct KafkaTarget: Sendable, Equatable {
    /// librdkafka configuration properties, such as `bootstrap.servers`, as text.
    public var properties: [(key: String, value: String)] = []
    public var topic: String
    /// Parameters other than topic: Kafka headers of each message.
    public var attributes: [(key: String, value: String)] = []

    public static func == (lhs: KafkaTarget, rhs: KafkaTarget) -> Bool {
        lhs.topic == rhs.topic && lhs.properties.map(\.key) == rhs.properties.map(\.key)
            && lhs.properties.map(\.value) == rhs.properties.map(\.value)
            && lhs.attributes.map(\.key) == rhs.attributes.map(\.key)
            && lhs.attributes.map(\.value) == rhs.attributes.map(\.value)
    }

    /// Builds a target from settings that `problem` accepted.
    init(connDetails: JSONObject, params: JSONObject) {
        properties = connDetails.members.map { ($0.key, $0.value.text ?? "") }
        topic = params["topic"]?.text ?? ""
        for member in params.members where member.key != "topic" {
            attributes.append((member.key, member.value.text ?? ""))
        }
    }

    /// Returns whether every comma-separated entry has a host and a numeric port.
    static func isServerList(_ text: String) -> Bool {
        let entries = text.split(separator: ",", omittingEmptySubsequences: false)
        return entries.allSatisfy { entry in
            let trimmed = entry.trimmingSpaces()
            guard let colon = trimmed.lastIndex(of: ":") else {
                return false
            }
            let port = trimmed[trimmed.index(after: colon)...]
            return colon > trimmed.startIndex && !port.isEmpty && port.allSatisfy { $0.isASCII && $0.isNumber }
        }
    }

    /// Returns the message key, so that all events of one row go to one partition and stay in order.
    public static func messageKey(model: String, rowKey: String) -> String {
        "\(model):\(rowKey)"
    }

    static func problem(connDetails: JSONObject, params: JSONObject, merged: Bool) -> BrokerTarget.Problem? {
        for member in connDetails.members {
            switch member.value {
            case .string, .number, .bool:
                break
            default:
                return .init(path: "conn_details.\(member.key)", message: "must be a string, number or boolean librdkafka property")
            }
        }
        if let servers = connDetails["bootstrap.servers"] {
            // A bare number would be read as an IPv4 address (28296 is 0.0.110.136).
            guard case .string(let text) = servers, text.contains("{{") || Self.isServerList(text) else {
                return .init(
                    path: "conn_details.bootstrap.servers",
                    message: "must be a string of host:port entries separated by commas, such as \"127.0.0.1:9092\"")
            }
        }
        for member in params.members {
            guard member.value.isScalarText, member.value.text?.isEmpty == false || member.key != "topic" else {
                return .init(path: "params.\(member.key)", message: "must be a non-empty string or a number")
            }
        }
        if merged && connDetails["bootstrap.servers"] == nil {
            return .init(path: "conn_details.bootstrap.servers", message: "a Kafka broker needs bootstrap.servers")
        }
        if merged && params["topic"] == nil {
            return .init(path: "params.topic", message: "a Kafka broker needs a topic")
        }
        return nil
    }
}
