import CKafkaShim

#if canImport(Glibc)
import Glibc
#endif

public struct KafkaError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable {
        /// Not delivered this time; a later attempt may succeed.
        case failed
        /// Larger than the producer or broker accepts: retrying cannot help.
        case tooLarge
        /// The producer cannot go on; create a new one.
        case broken
    }

    public let kind: Kind
    public let message: String

    public var description: String { message }
}

/// An idempotent Kafka producer (librdkafka) that waits for each message's delivery report.
///
/// Not thread-safe: give each producer one owner.
public final class KafkaProducer {
    private let producer: OpaquePointer

    /// Creates a producer from librdkafka configuration properties such as
    /// `bootstrap.servers`; `messageTimeout` bounds each message until its report.
    public init(configuration: [(String, String)], messageTimeout: Duration) throws(KafkaError) {
        var error = [CChar](repeating: 0, count: 512)
        let created = withCStrings(configuration.map(\.0)) { names in
            withCStrings(configuration.map(\.1)) { values in
                at_kafka_producer_new(
                    names, values, configuration.count, Int32(clamping: messageTimeout.milliseconds), &error, error.count)
            }
        }
        guard let created else {
            throw KafkaError(kind: .broken, message: "creating the Kafka producer failed: \(text(error))")
        }
        producer = created
    }

    deinit {
        at_kafka_producer_destroy(producer)
    }

    /// Returns the first problem librdkafka finds in producer properties, such as an
    /// unknown property or an invalid value, or nil when it accepts them all.
    public static func problem(in configuration: [(String, String)]) -> String? {
        var error = [CChar](repeating: 0, count: 512)
        let status = withCStrings(configuration.map(\.0)) { names in
            withCStrings(configuration.map(\.1)) { values in
                at_kafka_check_configuration(names, values, configuration.count, &error, error.count)
            }
        }
        return status == 0 ? nil : text(error)
    }

    /// Produces one message and returns once the cluster acknowledged it.
    public func produce(topic: String, key: [UInt8], value: [UInt8], headers: [(String, String)]) throws(KafkaError) {
        var error = [CChar](repeating: 0, count: 512)
        let status = key.withUnsafeBytes { keyBytes in
            value.withUnsafeBytes { valueBytes in
                withCStrings(headers.map(\.0)) { names in
                    withCStrings(headers.map(\.1)) { values in
                        at_kafka_produce(
                            producer, topic, keyBytes.baseAddress, keyBytes.count, valueBytes.baseAddress, valueBytes.count,
                            names, values, headers.count, &error, error.count)
                    }
                }
            }
        }
        switch status {
        case AT_KAFKA_OK:
            return
        case AT_KAFKA_TOO_LARGE:
            throw KafkaError(kind: .tooLarge, message: text(error))
        case AT_KAFKA_BROKEN:
            throw KafkaError(kind: .broken, message: text(error))
        default:
            throw KafkaError(kind: .failed, message: text(error))
        }
    }
}

/// librdkafka's in-process mock cluster on loopback, a real Kafka-protocol broker for tests.
public final class KafkaMockCluster {
    private let cluster: OpaquePointer

    public init(brokers: Int) throws(KafkaError) {
        var error = [CChar](repeating: 0, count: 512)
        guard let cluster = at_kafka_mock_cluster_new(Int32(brokers), &error, error.count) else {
            throw KafkaError(kind: .broken, message: text(error))
        }
        self.cluster = cluster
    }

    deinit {
        at_kafka_mock_cluster_destroy(cluster)
    }

    /// The `bootstrap.servers` value of the cluster.
    public var bootstrapServers: String {
        String(cString: at_kafka_mock_cluster_bootstraps(cluster))
    }

    /// Takes broker `id` (1 to the broker count) down or brings it back.
    public func setBroker(_ id: Int, up: Bool) throws(KafkaError) {
        guard at_kafka_mock_broker_set_up(cluster, Int32(id), up ? 1 : 0) == 0 else {
            throw KafkaError(kind: .failed, message: "setting mock broker \(id) \(up ? "up" : "down") failed")
        }
    }

    public func createTopic(_ name: String, partitions: Int) throws(KafkaError) {
        guard at_kafka_mock_topic_create(cluster, name, Int32(partitions)) == 0 else {
            throw KafkaError(kind: .failed, message: "creating topic \(name) failed")
        }
    }
}

/// A consumed message.
public struct KafkaMessage: Sendable {
    public let key: [UInt8]
    public let value: [UInt8]
    public let partition: Int
    public let headers: [String: String]
}

/// A consumer that reads every partition of one topic from the beginning, for tests.
public final class KafkaConsumer {
    private let consumer: OpaquePointer

    public init(bootstrapServers: String, topic: String, partitions: Int) throws(KafkaError) {
        var error = [CChar](repeating: 0, count: 512)
        guard let consumer = at_kafka_consumer_new(bootstrapServers, topic, Int32(partitions), &error, error.count) else {
            throw KafkaError(kind: .broken, message: text(error))
        }
        self.consumer = consumer
    }

    deinit {
        at_kafka_consumer_destroy(consumer)
    }

    /// Returns the next message, or nil when none arrives within `timeout`.
    public func next(timeout: Duration) throws(KafkaError) -> KafkaMessage? {
        var error = [CChar](repeating: 0, count: 512)
        var key: UnsafeMutablePointer<CChar>?
        var keySize = 0
        var value: UnsafeMutablePointer<CChar>?
        var valueSize = 0
        var partition: Int32 = 0
        var headers: UnsafeMutablePointer<CChar>?
        let result = at_kafka_consume(
            consumer, Int32(clamping: timeout.milliseconds), &key, &keySize, &value, &valueSize, &partition, &headers,
            &error, error.count)
        defer {
            at_kafka_free(key)
            at_kafka_free(value)
            at_kafka_free(headers)
        }
        guard result >= 0 else {
            throw KafkaError(kind: .failed, message: text(error))
        }
        guard result == 1 else {
            return nil
        }
        var headerMap: [String: String] = [:]
        for line in (headers.map { String(cString: $0) } ?? "").split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            if parts.count == 2 {
                headerMap[String(parts[0])] = String(parts[1])
            }
        }
        return KafkaMessage(
            key: bytes(key, keySize), value: bytes(value, valueSize), partition: Int(partition), headers: headerMap)
    }
}

private func bytes(_ pointer: UnsafeMutablePointer<CChar>?, _ size: Int) -> [UInt8] {
    guard let pointer else {
        return []
    }
    return Array(UnsafeRawBufferPointer(start: pointer, count: size))
}

private func text(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Calls `body` with a C array of C strings that lives for the call.
private func withCStrings<T>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> T) -> T {
    let copies = strings.map { strdup($0) }
    defer {
        copies.forEach { free($0) }
    }
    let pointers: [UnsafePointer<CChar>?] = copies.map { $0.map { UnsafePointer($0) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress) }
}

extension Duration {
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
