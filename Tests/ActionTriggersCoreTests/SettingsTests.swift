import ActionTriggersCore
import Foundation
import Testing

@Suite("Settings.parse")
struct SettingsTests {
    private func parse(_ text: String) throws(SettingsError) -> Settings {
        try Settings.parse(Data(text.utf8))
    }

    @Test("empty object gives defaults")
    func defaults() throws {
        let settings = try parse("{}")
        #expect(settings.maxWebhookTimeout == 30)
        #expect(settings.whitelistedContentTypes == nil)
        #expect(settings.whitelistedWebhookEndpointPatterns == nil)
        #expect(settings.retry == .default)
        #expect(settings.dispatchHold == .stream)
    }

    @Test("every known key is read")
    func fullDocument() throws {
        let settings = try parse("""
            {"max_webhook_timeout": 12.5, "max_broker_timeout": 3,
             "whitelisted_content_types": ["myapp.customer"],
             "whitelisted_webhook_endpoint_patterns": ["https://example.com/"],
             "retry": {"max_attempts": 4, "base_delay_secs": 0.5, "max_delay_secs": 10, "jitter": 0},
             "poll_interval_secs": 2, "dispatch_batch_size": 100, "delivery_concurrency": 8,
             "dispatch_hold": "off", "brokers": {},
             "dynamic_values": {"myapp.utils.get_token": {"env": "TOKEN"}, "a.file": {"file": "/run/secret", "cache_secs": 0},
                                "a.query": {"sql": "SELECT 1", "cache_secs": 5}}}
            """)
        #expect(settings.maxWebhookTimeout == 12.5)
        #expect(settings.maxBrokerTimeout == 3)
        #expect(settings.whitelistedContentTypes == ["myapp.customer"])
        #expect(settings.whitelistedWebhookEndpointPatterns == ["https://example.com/"])
        #expect(settings.retry == RetryPolicy(maxAttempts: 4, baseDelay: 0.5, maxDelay: 10, jitter: 0))
        #expect(settings.pollInterval == 2)
        #expect(settings.dispatchBatchSize == 100)
        #expect(settings.deliveryConcurrency == 8)
        #expect(settings.dispatchHold == .off)
        #expect(settings.dynamicValues == [
            "myapp.utils.get_token": DynamicValue(source: .environment("TOKEN"), cacheSeconds: 60),
            "a.file": DynamicValue(source: .file("/run/secret"), cacheSeconds: 0),
            "a.query": DynamicValue(source: .sql("SELECT 1"), cacheSeconds: 5),
        ])
    }

    @Test("invalid documents name the key", arguments: [
        ("[]", "", "the file must contain a JSON object (got array)"),
        (#"{"max_webhook_timout": 5}"#, "max_webhook_timout", "is not a known setting"),
        (#"{"dispatch_hold": "sometimes"}"#, "dispatch_hold", #"must be one of "stream", "always", "off" (got "sometimes")"#),
        (#"{"dispatch_hold": true}"#, "dispatch_hold", #"must be one of "stream", "always", "off" (got true)"#),
        (#"{"max_webhook_timeout": -1}"#, "max_webhook_timeout", "must be a number from 0.001 to 3600 (got -1)"),
        (#"{"max_webhook_timeout": "5"}"#, "max_webhook_timeout", "must be a number from 0.001 to 3600 (got \"5\")"),
        (#"{"max_webhook_timeout": 1e300}"#, "max_webhook_timeout", "must be a number from 0.001 to 3600 (got 1e300)"),
        (#"{"poll_interval_secs": 1e-9}"#, "poll_interval_secs", "must be a number from 0.1 to 3600 (got 1e-9)"),
        (#"{"retry": {"max_delay_secs": 1e9}}"#, "retry.max_delay_secs", "must be a number from 0.001 to 604800"),
        (#"{"whitelisted_content_types": ["customer"]}"#, "whitelisted_content_types[0]", "must look like app_label.model_name"),
        (#"{"whitelisted_content_types": [1]}"#, "whitelisted_content_types[0]", "must be a string (got number)"),
        (#"{"retry": {"max_attempts": 0}}"#, "retry.max_attempts", "must be an integer from 1 to 1000 (got 0)"),
        (#"{"retry": {"max_attempts": 2.5}}"#, "retry.max_attempts", "must be an integer from 1 to 1000 (got 2.5)"),
        (#"{"retry": {"jitter": 2}}"#, "retry.jitter", "must be a number from 0 to 1 (got 2)"),
        (#"{"retry": {"base_delay_secs": 100, "max_delay_secs": 10}}"#, "retry.base_delay_secs", "must not exceed"),
        (#"{"retry": {"tries": 3}}"#, "retry.tries", "is not a known setting"),
        (#"{"brokers": []}"#, "brokers", "must be an object of broker names to definitions (got array)"),
        (#"{"brokers": {"rabbit": {}}}"#, "brokers.rabbit.broker_type", "must be one of redis, rabbitmq, kafka, aws_sqs, aws_sns, gcp_pubsub"),
        (#"{"brokers": {"g": {"broker_type": "gcp_pubsub", "conn_details": {"project_id": "p"}}}}"#,
         "brokers.g.conn_details.project_id", "is not a Pub/Sub connection setting; known: project, credentials_file, endpoint_url"),
        (#"{"brokers": {"q": {"broker_type": "aws_sqs", "conn_details": {"endpoint_url": "ftp://x"}}}}"#,
         "brokers.q.conn_details.endpoint_url", "must be an http:// or https:// URL"),
        (#"{"brokers": {"k": {"broker_type": "kafka", "conn_details": {"acks": []}}}}"#, "brokers.k.conn_details.acks",
         "must be a string, number or boolean librdkafka property"),
        (#"{"brokers": {"r": {"broker_type": "rabbitmq", "params": {"queue": "a", "exchange": "b"}}}}"#,
         "brokers.r.params.queue", "give either queue (the default exchange) or exchange with an optional routing_key, not both"),
        (#"{"brokers": {"": {"broker_type": "redis"}}}"#, "brokers", "has a broker with an empty name; give it a name"),
        (#"{"brokers": {"k": {"broker_type": "kafka", "conn_details": {"bootstrap.servers": 28296}}}}"#,
         "brokers.k.conn_details.bootstrap.servers", "must be a string of host:port entries separated by commas"),
        (#"{"brokers": {"s": {"broker_type": "aws_sns", "params": {"topic_arn": "not-an-arn"}}}}"#,
         "brokers.s.params.topic_arn", "must be an SNS topic ARN"),
        (#"{"brokers": {"p": {"broker_type": "gcp_pubsub", "params": {"topic": "projects/x/topics"}}}}"#,
         "brokers.p.params.topic", "must be a topic name, or a full path projects/<project>/topics/<topic>"),
        (#"{"brokers": {"q": {"broker_type": "aws_sqs", "params": {"a1": "1", "a2": "2", "a3": "3", "a4": "4", "a5": "5", "a6": "6", "a7": "7"}}}}"#,
         "brokers.q.params", "has 7 message attributes besides message_id, event_id, signal and model"),
        (#"{"brokers": {"r": {"broker_type": "redis", "conn": {}}}}"#, "brokers.r.conn", "is not a known field"),
        (#"{"brokers": {"r": {"broker_type": "redis", "params": []}}}"#, "brokers.r.params", "must be an object (got array)"),
        (#"{"brokers": {"r": {"broker_type": "redis", "conn_details": {"port": 0}}}}"#, "brokers.r.conn_details.port",
         "must be a port number from 1 to 65535"),
        (#"{"brokers": {"r": {"broker_type": "redis", "conn_details": {"hostname": "x"}}}}"#, "brokers.r.conn_details.hostname",
         "is not a Redis connection setting"),
        (#"{"brokers": {"r": {"broker_type": "redis", "params": {"channel": "a", "stream": "b"}}}}"#, "brokers.r.params.stream",
         "give either channel (PUBLISH) or stream (XADD), not both"),
        (#"{"dispatch_batch_size": 0}"#, "dispatch_batch_size", "must be an integer from 1 to 10000 (got 0)"),
        (#"{"dynamic_values": []}"#, "dynamic_values", "must be an object of names to sources (got array)"),
        (#"{"retention_days": 0}"#, "retention_days", "must be a number from 0.001 to 36500 (got 0)"),
        (#"{"brokers": {"r": {"broker_type": "redis", "conn_details": {"password": "{{ nope.undeclared }}"}}}}"#,
         "brokers.r.conn_details.password", "uses dynamic value nope.undeclared, which is not in dynamic_values; add it there"),
        (#"{"dynamic_values": {"my app": {"env": "X"}}}"#, "dynamic_values.my app", "is not a valid name"),
        (#"{"dynamic_values": {"a.b": "X"}}"#, "dynamic_values.a.b", "must be an object such as"),
        (#"{"dynamic_values": {"a.b": {}}}"#, "dynamic_values.a.b", "needs exactly one source: env, file or sql"),
        (#"{"dynamic_values": {"a.b": {"env": "X", "file": "/y"}}}"#, "dynamic_values.a.b", "needs exactly one source"),
        (#"{"dynamic_values": {"a.b": {"env": ""}}}"#, "dynamic_values.a.b.env", "must be a non-empty string"),
        (#"{"dynamic_values": {"a.b": {"module": "x"}}}"#, "dynamic_values.a.b.module", "is not a known field"),
        (#"{"dynamic_values": {"a.b": {"env": "X", "cache_secs": -1}}}"#, "dynamic_values.a.b.cache_secs",
         "must be a number from 0 to 86400 (got -1)"),
    ])
    func invalid(text: String, path: String, message: String) {
        do {
            _ = try parse(text)
            Issue.record("expected an error for \(text)")
        } catch {
            #expect(error.path == path)
            #expect(error.message.contains(message), "message was: \(error.message)")
        }
    }

    @Test("malformed JSON is reported")
    func malformed() {
        do {
            _ = try parse(#"{"retry": {"max_attempts": 3,}"#)
            Issue.record("expected an error")
        } catch {
            #expect(error.description == "invalid settings: the file is not valid JSON: line 1, column 30: trailing comma before '}'")
        }
    }
}
