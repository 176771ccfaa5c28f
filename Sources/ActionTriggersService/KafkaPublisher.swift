import ActionTriggersCore
import KafkaClient

/// Produces messages to Kafka, reusing one idempotent producer per configuration.
///
/// Owned by the broker worker's thread. A producer that hits a fatal error is
/// dropped, and the next message creates a new one.
final class KafkaPublisher {
    private struct ProducerKey: Hashable {
        let properties: [String]
        let timeoutMilliseconds: Int64
    }

    private var producers: [ProducerKey: KafkaProducer] = [:]

    /// Produces one message and waits until the cluster acknowledged it.
    func publish(
        _ body: [UInt8], to target: KafkaTarget, key: String, headers: [(String, String)], timeout: Duration
    ) throws(KafkaError) {
        let producerKey = ProducerKey(
            properties: target.properties.flatMap { [$0.key, $0.value] }, timeoutMilliseconds: timeout.milliseconds)
        let producer: KafkaProducer
        if let existing = producers[producerKey] {
            producer = existing
        } else {
            producer = try KafkaProducer(
                configuration: target.properties.map { ($0.key, $0.value) }, messageTimeout: timeout)
            producers[producerKey] = producer
        }
        do {
            try producer.produce(topic: target.topic, key: Array(key.utf8), value: body, headers: headers)
        } catch {
            if error.kind == .broken {
                producers[producerKey] = nil
            }
            throw error
        }
    }
}
