/// A message broker of the settings file's `brokers`, as the ancestor's
/// `ACTION_TRIGGERS["brokers"]` names them: `broker_type`, `conn_details`, `params`.
///
/// A config's queue merges its `conn_details` and `parameters` over these. The
/// keys set here are fixed: a config cannot override them.
public struct BrokerDefinition: Sendable, Equatable {
    public let type: BrokerType
    public let connDetails: JSONObject
    public let params: JSONObject

    public init(type: BrokerType, connDetails: JSONObject = [:], params: JSONObject = [:]) {
        self.type = type
        self.connDetails = connDetails
        self.params = params
    }
}

/// The broker types, named as the ancestor's `broker_type` values.
public enum BrokerType: String, Sendable, CaseIterable {
    case redis
    case rabbitmq
    case kafka
    case awsSQS = "aws_sqs"
    case awsSNS = "aws_sns"
    case gcpPubSub = "gcp_pubsub"

    /// The keys of `conn_details` each type reads, after merging; nil when any key
    /// is passed on to the client library (Kafka's are librdkafka properties).
    public var connectionKeys: [String]? {
        switch self {
        case .redis: ["host", "port", "db", "username", "password"]
        case .rabbitmq: ["host", "port", "virtual_host", "username", "password"]
        case .kafka: nil
        case .awsSQS, .awsSNS:
            ["endpoint_url", "region_name", "aws_access_key_id", "aws_secret_access_key", "aws_session_token"]
        case .gcpPubSub: ["project", "credentials_file", "endpoint_url"]
        }
    }

    /// The keys of `params` each type reads, after merging. Other keys are message
    /// attributes where the broker has them (Redis stream fields, AMQP and Kafka headers,
    /// SQS, SNS and Pub/Sub message attributes).
    public var parameterKeys: [String] {
        switch self {
        case .redis: ["channel", "stream", "maxlen"]
        case .rabbitmq: ["queue", "exchange", "routing_key"]
        case .kafka: ["topic"]
        case .awsSQS: ["queue_url", "queue_name", "message_group_id"]
        case .awsSNS: ["topic_arn", "message_group_id"]
        case .gcpPubSub: ["topic"]
        }
    }
}

extension Settings {
    static func brokers(_ value: JSONValue) throws(SettingsError) -> [String: BrokerDefinition] {
        guard case .object(let entries) = value else {
            throw SettingsError(path: "brokers", message: "must be an object of broker names to definitions (got \(value.typeName))")
        }
        var result: [String: BrokerDefinition] = [:]
        for (name, entry) in entries.members {
            let path = "brokers.\(name)"
            guard !name.isEmpty else {
                throw SettingsError(path: "brokers", message: "has a broker with an empty name; give it a name")
            }
            guard case .object(let fields) = entry else {
                throw SettingsError(
                    path: path, message: #"must be an object such as {"broker_type": "redis", "conn_details": {...}, "params": {...}} (got \#(entry.typeName))"#)
            }
            for key in fields.keys where !["broker_type", "conn_details", "params"].contains(key) {
                throw SettingsError(path: "\(path).\(key)", message: "is not a known field; known: broker_type, conn_details, params")
            }
            let typeNames = BrokerType.allCases.map(\.rawValue).joined(separator: ", ")
            guard case .string(let typeName)? = fields["broker_type"], let type = BrokerType(rawValue: typeName) else {
                throw SettingsError(path: "\(path).broker_type", message: "must be one of \(typeNames)")
            }
            var objects: [JSONObject] = []
            for key in ["conn_details", "params"] {
                guard let field = fields[key] else {
                    objects.append([:])
                    continue
                }
                guard case .object(let object) = field else {
                    throw SettingsError(path: "\(path).\(key)", message: "must be an object (got \(field.typeName))")
                }
                objects.append(object)
            }
            let definition = BrokerDefinition(type: type, connDetails: objects[0], params: objects[1])
            if let problem = BrokerTarget.problem(type: type, connDetails: definition.connDetails, params: definition.params, merged: false) {
                throw SettingsError(path: "\(path).\(problem.path)", message: problem.message)
            }
            result[name] = definition
        }
        return result
    }
}
