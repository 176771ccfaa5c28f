/// The destination of one broker delivery: a queue's settings merged over its broker's.
public enum BrokerTarget: Sendable, Equatable {
    case redis(RedisTarget)
    case rabbitMQ(RabbitMQTarget)
    case kafka(KafkaTarget)
    case aws(AWSTarget, service: BrokerType)
    case pubSub(PubSubTarget)

    /// A field of `conn_details` or `params` with what is wrong with it.
    public struct Problem: Sendable, Equatable {
        public let path: String
        public let message: String
    }

    /// Returns the first problem of a broker's settings, or nil.
    ///
    /// With `merged` false (a broker of the settings file, before a config adds
    /// its part) required keys may be missing, and values holding a `{{ name }}`
    /// dynamic value are checked only after they are resolved.
    public static func problem(type: BrokerType, connDetails: JSONObject, params: JSONObject, merged: Bool) -> Problem? {
        switch type {
        case .redis:
            return RedisTarget.problem(connDetails: connDetails, params: params, merged: merged)
        case .rabbitmq:
            return RabbitMQTarget.problem(connDetails: connDetails, params: params, merged: merged)
        case .kafka:
            return KafkaTarget.problem(connDetails: connDetails, params: params, merged: merged)
        case .awsSQS, .awsSNS:
            return AWSTarget.problem(type: type, connDetails: connDetails, params: params, merged: merged)
        case .gcpPubSub:
            return PubSubTarget.problem(connDetails: connDetails, params: params, merged: merged)
        }
    }

    /// Builds the target of a delivery from merged settings whose dynamic values are resolved.
    public static func make(type: BrokerType, connDetails: JSONObject, params: JSONObject) -> Result<BrokerTarget, BrokerTargetError> {
        if let problem = problem(type: type, connDetails: connDetails, params: params, merged: true) {
            return .failure(BrokerTargetError(message: "\(problem.path): \(problem.message)"))
        }
        switch type {
        case .redis:
            return .success(.redis(RedisTarget(connDetails: connDetails, params: params)))
        case .rabbitmq:
            return .success(.rabbitMQ(RabbitMQTarget(connDetails: connDetails, params: params)))
        case .kafka:
            return .success(.kafka(KafkaTarget(connDetails: connDetails, params: params)))
        case .awsSQS, .awsSNS:
            return .success(.aws(AWSTarget(connDetails: connDetails, params: params), service: type))
        case .gcpPubSub:
            return .success(.pubSub(PubSubTarget(connDetails: connDetails, params: params)))
        }
    }
}

public struct BrokerTargetError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// A Redis channel (PUBLISH) or stream (XADD) with the server to reach.
public struct RedisTarget: Sendable, Equatable {
    public enum Destination: Sendable, Equatable {
        case channel(String)
        /// A stream, trimmed to about `maxLength` entries when set.
        case stream(String, maxLength: Int?)
    }

    public var host = "127.0.0.1"
    public var port = 6379
    public var database = 0
    public var username: String?
    public var password: String?
    public var destination: Destination
    /// Parameters other than channel, stream and maxlen: fields of each stream entry.
    public var attributes: [(key: String, value: String)] = []

    public static func == (lhs: RedisTarget, rhs: RedisTarget) -> Bool {
        lhs.host == rhs.host && lhs.port == rhs.port && lhs.database == rhs.database && lhs.username == rhs.username
            && lhs.password == rhs.password && lhs.destination == rhs.destination
            && lhs.attributes.map(\.key) == rhs.attributes.map(\.key)
            && lhs.attributes.map(\.value) == rhs.attributes.map(\.value)
    }

    /// Builds a target from settings that `problem` accepted.
    init(connDetails: JSONObject, params: JSONObject) {
        if let host = connDetails["host"]?.text {
            self.host = host
        }
        port = connDetails["port"].flatMap(Self.integer) ?? 6379
        database = connDetails["db"].flatMap(Self.integer) ?? 0
        username = connDetails["username"]?.text
        password = connDetails["password"]?.text
        if let channel = params["channel"]?.text {
            destination = .channel(channel)
        } else {
            destination = .stream(params["stream"]?.text ?? "", maxLength: params["maxlen"].flatMap(Self.integer))
        }
        for member in params.members where !BrokerType.redis.parameterKeys.contains(member.key) {
            attributes.append((member.key, member.value.text ?? ""))
        }
    }

    static func problem(connDetails: JSONObject, params: JSONObject, merged: Bool) -> BrokerTarget.Problem? {
        for member in connDetails.members {
            let path = "conn_details.\(member.key)"
            let known = BrokerType.redis.connectionKeys ?? []
            guard known.contains(member.key) else {
                return .init(path: path, message: "is not a Redis connection setting; known: \(known.joined(separator: ", "))")
            }
            if !merged, case .string(let text) = member.value, text.contains("{{") {
                continue
            }
            switch member.key {
            case "port":
                guard let port = integer(member.value), (1...65535).contains(port) else {
                    return .init(path: path, message: "must be a port number from 1 to 65535")
                }
            case "db":
                guard let database = integer(member.value), database >= 0 else {
                    return .init(path: path, message: "must be a database number of 0 or more")
                }
            default:
                guard case .string(let text) = member.value, !text.isEmpty else {
                    return .init(path: path, message: "must be a non-empty string")
                }
            }
        }

        for member in params.members {
            let path = "params.\(member.key)"
            if !merged, case .string(let text) = member.value, text.contains("{{") {
                continue
            }
            switch member.key {
            case "channel", "stream":
                guard member.value.isScalarText, member.value.text?.isEmpty == false else {
                    return .init(path: path, message: "must be a non-empty string")
                }
            case "maxlen":
                guard let length = integer(member.value), length >= 1 else {
                    return .init(path: path, message: "must be a positive integer")
                }
            default:
                guard member.value.isScalarText else {
                    return .init(path: path, message: "must be a string or a number, sent as a field of each stream entry")
                }
            }
        }

        let hasChannel = params["channel"] != nil
        let hasStream = params["stream"] != nil
        if hasChannel && hasStream {
            return .init(path: "params.stream", message: "give either channel (PUBLISH) or stream (XADD), not both")
        }
        if hasChannel && params["maxlen"] != nil {
            return .init(path: "params.maxlen", message: "applies to a stream only")
        }
        let attributes = params.keys.filter { !BrokerType.redis.parameterKeys.contains($0) }
        if hasChannel, let attribute = attributes.first {
            return .init(
                path: "params.\(attribute)",
                message: "a Redis channel message has no fields to carry it; publish to a stream to send attributes")
        }
        if merged && !hasChannel && !hasStream {
            return .init(path: "params.channel", message: "a Redis broker needs a channel (PUBLISH) or a stream (XADD)")
        }
        return nil
    }

    /// Returns an integer from a JSON number or a string of digits, as settings write ports.
    ///
    /// Strings and numbers are both accepted wherever a broker setting is text, because
    /// SQL validation accepts both and a number is sent as its JSON text.
    static func integer(_ value: JSONValue) -> Int? {
        switch value {
        case .number(let number): Int(number.text)
        case .string(let text): Int(text)
        default: nil
        }
    }
}
