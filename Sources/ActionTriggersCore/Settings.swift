import Foundation

/// The service's settings file (`ACTION_TRIGGERS_SETTINGS`), a JSON object.
///
/// Every key is optional; unknown keys are rejected so a typo never goes unnoticed.
public struct Settings: Sendable {
    /// The cap on a webhook's `timeout_secs`, and the timeout of a webhook without one, in seconds.
    public var maxWebhookTimeout: Double = 30
    /// The cap on a broker queue's `timeout_secs`, in seconds.
    public var maxBrokerTimeout: Double = 30
    /// `app_label.model_name` entries that configs may name; `nil` allows every model.
    public var whitelistedContentTypes: [String]?
    /// PostgreSQL regular expressions a webhook URL must match from its start; `nil` allows every http(s) URL.
    public var whitelistedWebhookEndpointPatterns: [String]?
    public var retry: RetryPolicy = .default
    /// The fallback poll interval for new events when no NOTIFY arrives, in seconds.
    public var pollInterval: Double = 5
    /// The maximum number of events turned into deliveries per dispatcher transaction.
    public var dispatchBatchSize = 500
    /// The maximum number of webhook requests in flight at once.
    public var deliveryConcurrency = 64
    /// When a dispatch keeps its transaction open while the first attempts of the webhook
    /// deliveries it hands over run (`DispatchHoldPolicy`).
    public var dispatchHold: DispatchHold = .stream
    /// How long a stopping service lets requests in flight finish before it releases
    /// their deliveries to other instances, in seconds.
    public var shutdownGrace: Double = 10
    /// How long events and their finished deliveries are kept, in days.
    public var retentionDays: Double = 30
    /// Names that configs may use as `{{ name }}` in webhook headers and broker settings.
    public var dynamicValues: [String: DynamicValue] = [:]
    /// Message brokers by name, which configs' `msg_broker_queues` refer to.
    public var brokers: [String: BrokerDefinition] = [:]

    public init() {}

    /// The values of `dispatch_hold`.
    public enum DispatchHold: String, Sendable, CaseIterable {
        /// While the dispatcher polls a stream of events, which saves a write of each
        /// delivery where it matters and keeps holds out of single events' latency.
        case stream
        /// For every dispatch that hands deliveries over.
        case always
        /// Never: every delivery is written in flight, then with its outcome.
        case off
    }

    /// The keys this version reads, for error messages and the documentation.
    public static let knownKeys = [
        "max_webhook_timeout", "max_broker_timeout", "whitelisted_content_types",
        "whitelisted_webhook_endpoint_patterns", "retry", "poll_interval_secs",
        "dispatch_batch_size", "delivery_concurrency", "brokers", "dynamic_values", "retention_days",
        "shutdown_grace_secs", "dispatch_hold",
    ]

    /// The fields of the `retry` object, for error messages and the documentation.
    public static let knownRetryKeys = ["max_attempts", "base_delay_secs", "max_delay_secs", "jitter"]

    /// Parses and checks a settings document.
    public static func parse(_ data: Data) throws(SettingsError) -> Settings {
        let document: JSONValue
        do {
            document = try JSONParser.parse(Array(data))
        } catch {
            throw SettingsError(path: "", message: "the file is not valid JSON: \(error.description)")
        }
        guard case .object(let fields) = document else {
            throw SettingsError(path: "", message: "the file must contain a JSON object (got \(document.typeName))")
        }

        var settings = Settings()
        for key in fields.keys where !knownKeys.contains(key) {
            throw SettingsError(path: key, message: "is not a known setting; known settings: \(knownKeys.joined(separator: ", "))")
        }
        if let value = fields["max_webhook_timeout"] {
            settings.maxWebhookTimeout = try number(value, path: "max_webhook_timeout", range: Limits.timeout)
        }
        if let value = fields["max_broker_timeout"] {
            settings.maxBrokerTimeout = try number(value, path: "max_broker_timeout", range: Limits.timeout)
        }
        if let value = fields["whitelisted_content_types"] {
            let entries = try strings(value, path: "whitelisted_content_types")
            for (index, entry) in entries.enumerated() where entry.split(separator: ".").count != 2 {
                throw SettingsError(
                    path: "whitelisted_content_types[\(index)]",
                    message: "must look like app_label.model_name (got \"\(entry)\")")
            }
            settings.whitelistedContentTypes = entries
        }
        if let value = fields["whitelisted_webhook_endpoint_patterns"] {
            // The patterns are PostgreSQL regular expressions, checked when the service publishes them.
            settings.whitelistedWebhookEndpointPatterns = try strings(value, path: "whitelisted_webhook_endpoint_patterns")
        }
        if let value = fields["retry"] {
            settings.retry = try retryPolicy(value)
        }
        if let value = fields["poll_interval_secs"] {
            settings.pollInterval = try number(value, path: "poll_interval_secs", range: Limits.pollInterval)
        }
        if let value = fields["dispatch_batch_size"] {
            settings.dispatchBatchSize = try integer(value, path: "dispatch_batch_size", range: 1...10_000)
        }
        if let value = fields["delivery_concurrency"] {
            settings.deliveryConcurrency = try integer(value, path: "delivery_concurrency", range: 1...10_000)
        }
        if let value = fields["dispatch_hold"] {
            let names = DispatchHold.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
            guard case .string(let text) = value, let hold = DispatchHold(rawValue: text) else {
                throw SettingsError(path: "dispatch_hold", message: "must be one of \(names) (got \(render(value)))")
            }
            settings.dispatchHold = hold
        }
        if let value = fields["shutdown_grace_secs"] {
            settings.shutdownGrace = try number(value, path: "shutdown_grace_secs", range: Limits.shutdownGrace)
        }
        if let value = fields["retention_days"] {
            settings.retentionDays = try number(value, path: "retention_days", range: Limits.retention)
        }
        if let value = fields["dynamic_values"] {
            settings.dynamicValues = try dynamicValues(value)
        }
        if let value = fields["brokers"] {
            settings.brokers = try brokers(value)
        }
        try checkDynamicValues(in: settings.brokers, known: settings.dynamicValues)
        return settings
    }

    // MARK: - Field parsers

    /// Rejects a broker setting that uses a `{{ name }}` missing from `dynamic_values`,
    /// which could never be resolved.
    private static func checkDynamicValues(
        in brokers: [String: BrokerDefinition], known: [String: DynamicValue]
    ) throws(SettingsError) {
        for (name, broker) in brokers.sorted(by: { $0.key < $1.key }) {
            for (field, object) in [("conn_details", broker.connDetails), ("params", broker.params)] {
                for member in object.members {
                    guard case .string(let text) = member.value else {
                        continue
                    }
                    for value in DynamicValue.names(in: text) where known[value] == nil {
                        throw SettingsError(
                            path: "brokers.\(name).\(field).\(member.key)",
                            message: "uses dynamic value \(value), which is not in dynamic_values; add it there")
                    }
                }
            }
        }
    }

    private static func dynamicValues(_ value: JSONValue) throws(SettingsError) -> [String: DynamicValue] {
        guard case .object(let entries) = value else {
            throw SettingsError(path: "dynamic_values", message: "must be an object of names to sources (got \(value.typeName))")
        }
        var result: [String: DynamicValue] = [:]
        for (name, entry) in entries.members {
            let path = "dynamic_values.\(name)"
            guard DynamicValue.isValidName(name) else {
                throw SettingsError(
                    path: path, message: "is not a valid name: use dotted identifiers such as myapp.utils.get_token")
            }
            guard case .object(let fields) = entry else {
                throw SettingsError(
                    path: path,
                    message: #"must be an object such as {"env": "VARIABLE"}, {"file": "/path"} or {"sql": "SELECT ..."} (got \#(entry.typeName))"#)
            }
            for key in fields.keys where !["env", "file", "sql", "cache_secs"].contains(key) {
                throw SettingsError(path: "\(path).\(key)", message: "is not a known field; known: env, file, sql, cache_secs")
            }
            var sources: [DynamicValue.Source] = []
            for key in ["env", "file", "sql"] {
                guard let field = fields[key] else {
                    continue
                }
                guard case .string(let text) = field, !text.isEmpty else {
                    throw SettingsError(path: "\(path).\(key)", message: "must be a non-empty string (got \(render(field)))")
                }
                switch key {
                case "env": sources.append(.environment(text))
                case "file": sources.append(.file(text))
                default: sources.append(.sql(text))
                }
            }
            guard sources.count == 1, let source = sources.first else {
                throw SettingsError(path: path, message: "needs exactly one source: env, file or sql")
            }
            let cacheSeconds = try fields["cache_secs"].map { value throws(SettingsError) in
                try number(value, path: "\(path).cache_secs", range: Limits.cacheLifetime)
            } ?? DynamicValue.defaultCacheSeconds
            result[name] = DynamicValue(source: source, cacheSeconds: cacheSeconds)
        }
        return result
    }

    private static func retryPolicy(_ value: JSONValue) throws(SettingsError) -> RetryPolicy {
        guard case .object(let fields) = value else {
            throw SettingsError(path: "retry", message: "must be an object (got \(value.typeName))")
        }
        for key in fields.keys where !knownRetryKeys.contains(key) {
            throw SettingsError(
                path: "retry.\(key)", message: "is not a known setting; known: \(knownRetryKeys.joined(separator: ", "))")
        }
        var policy = RetryPolicy.default
        if let value = fields["max_attempts"] {
            policy.maxAttempts = try integer(value, path: "retry.max_attempts", range: 1...1000)
        }
        if let value = fields["base_delay_secs"] {
            policy.baseDelay = try number(value, path: "retry.base_delay_secs", range: Limits.retryDelay)
        }
        if let value = fields["max_delay_secs"] {
            policy.maxDelay = try number(value, path: "retry.max_delay_secs", range: Limits.retryDelay)
        }
        if let value = fields["jitter"] {
            guard case .number(let number) = value, number.double >= 0, number.double <= 1 else {
                throw SettingsError(path: "retry.jitter", message: "must be a number from 0 to 1 (got \(Self.render(value)))")
            }
            policy.jitter = number.double
        }
        if policy.baseDelay > policy.maxDelay {
            throw SettingsError(
                path: "retry.base_delay_secs",
                message: "must not exceed retry.max_delay_secs (\(policy.baseDelay) > \(policy.maxDelay))")
        }
        return policy
    }

    /// The accepted ranges of the numeric settings, in seconds.
    ///
    /// They keep every value usable: a poll interval near zero would load the
    /// database, and a timeout of 1e300 seconds overflows PostgreSQL's timestamps.
    public enum Limits {
        public static let timeout = 0.001...3600.0
        public static let pollInterval = 0.1...3600.0
        public static let retryDelay = 0.001...604_800.0
        public static let cacheLifetime = 0.0...86_400.0
        public static let shutdownGrace = 0.0...3600.0
        /// Days; 0.001 days is 86.4 seconds.
        public static let retention = 0.001...36_500.0
    }

    private static func number(_ value: JSONValue, path: String, range: ClosedRange<Double>) throws(SettingsError) -> Double {
        guard case .number(let number) = value, range.contains(number.double) else {
            throw SettingsError(
                path: path,
                message: "must be a number from \(format(range.lowerBound)) to \(format(range.upperBound)) (got \(render(value)))")
        }
        return number.double
    }

    private static func integer(_ value: JSONValue, path: String, range: ClosedRange<Int>) throws(SettingsError) -> Int {
        guard case .number(let literal) = value, case let number = literal.double, number.rounded() == number,
              number >= Double(range.lowerBound), number <= Double(range.upperBound) else {
            throw SettingsError(
                path: path,
                message: "must be an integer from \(range.lowerBound) to \(range.upperBound) (got \(render(value)))")
        }
        return Int(number)
    }

    private static func strings(_ value: JSONValue, path: String) throws(SettingsError) -> [String] {
        guard case .array(let items) = value else {
            throw SettingsError(path: path, message: "must be a list of strings (got \(value.typeName))")
        }
        var result: [String] = []
        for (index, item) in items.enumerated() {
            guard case .string(let text) = item else {
                throw SettingsError(path: "\(path)[\(index)]", message: "must be a string (got \(item.typeName))")
            }
            result.append(text)
        }
        return result
    }

    private static func format(_ number: Double) -> String {
        number.rounded() == number && abs(number) < 1e15 ? String(Int64(number)) : String(number)
    }

    private static func render(_ value: JSONValue) -> String {
        switch value {
        case .number(let number):
            return number.text
        case .string(let text):
            return "\"\(text)\""
        case .bool(let flag):
            return String(flag)
        default:
            return value.typeName
        }
    }
}
