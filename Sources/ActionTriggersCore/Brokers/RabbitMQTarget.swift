/// A RabbitMQ queue (through the default exchange) or an exchange with a routing key.
public struct RabbitMQTarget: Sendable, Equatable {
    public var host = "127.0.0.1"
    public var port = 5672
    public var virtualHost = "/"
    public var username = "guest"
    public var password = "guest"
    public var exchange = ""
    public var routingKey: String
    /// Parameters other than queue, exchange and routing_key: AMQP headers of each message.
    public var attributes: [(key: String, value: String)] = []

    public static func == (lhs: RabbitMQTarget, rhs: RabbitMQTarget) -> Bool {
        lhs.host == rhs.host && lhs.port == rhs.port && lhs.virtualHost == rhs.virtualHost
            && lhs.username == rhs.username && lhs.password == rhs.password && lhs.exchange == rhs.exchange
            && lhs.routingKey == rhs.routingKey && lhs.attributes.map(\.key) == rhs.attributes.map(\.key)
            && lhs.attributes.map(\.value) == rhs.attributes.map(\.value)
    }

    /// Builds a target from settings that `problem` accepted.
    init(connDetails: JSONObject, params: JSONObject) {
        host = connDetails["host"]?.text ?? host
        port = connDetails["port"].flatMap(RedisTarget.integer) ?? port
        virtualHost = connDetails["virtual_host"]?.text ?? virtualHost
        username = connDetails["username"]?.text ?? username
        password = connDetails["password"]?.text ?? password
        if let queue = params["queue"]?.text {
            routingKey = queue
        } else {
            exchange = params["exchange"]?.text ?? ""
            routingKey = params["routing_key"]?.text ?? ""
        }
        for member in params.members where !BrokerType.rabbitmq.parameterKeys.contains(member.key) {
            attributes.append((member.key, member.value.text ?? ""))
        }
    }

    static func problem(connDetails: JSONObject, params: JSONObject, merged: Bool) -> BrokerTarget.Problem? {
        for member in connDetails.members {
            let path = "conn_details.\(member.key)"
            let known = BrokerType.rabbitmq.connectionKeys ?? []
            guard known.contains(member.key) else {
                return .init(path: path, message: "is not a RabbitMQ connection setting; known: \(known.joined(separator: ", "))")
            }
            if !merged, case .string(let text) = member.value, text.contains("{{") {
                continue
            }
            if member.key == "port" {
                guard let port = RedisTarget.integer(member.value), (1...65535).contains(port) else {
                    return .init(path: path, message: "must be a port number from 1 to 65535")
                }
            } else {
                guard case .string(let text) = member.value, !text.isEmpty else {
                    return .init(path: path, message: "must be a non-empty string")
                }
            }
        }

        for member in params.members {
            guard member.value.isScalarText, member.value.text?.isEmpty == false else {
                return .init(path: "params.\(member.key)", message: "must be a non-empty string or a number")
            }
        }
        let hasQueue = params["queue"] != nil
        let hasExchange = params["exchange"] != nil
        if hasQueue && (hasExchange || params["routing_key"] != nil) {
            return .init(
                path: "params.queue",
                message: "give either queue (the default exchange) or exchange with an optional routing_key, not both")
        }
        if merged && !hasQueue && !hasExchange {
            return .init(
                path: "params.queue", message: "a RabbitMQ broker needs a queue, or an exchange (the routing_key is optional, \"\" by default)")
        }
        return nil
    }
}
