import Foundation
import Synchronization

/// Counters, gauges and histograms rendered in the Prometheus text format 0.0.4.
///
/// Metrics are created once, at start, with fixed label values, so the set of
/// series is bounded by construction. Names follow
/// `action_triggers_<name>_<unit>`, and counters end in `_total`.
public final class MetricsRegistry: Sendable {
    private struct Family {
        let name: String
        let help: String
        let type: String
        var series: [any RenderableMetric]
    }

    private let families = Mutex<[Family]>([])

    public init() {}

    public func counter(_ name: String, help: String, labels: [(String, String)] = []) -> Counter {
        let counter = Counter(name: name, labels: labels)
        register(counter, name: name, help: help, type: "counter")
        return counter
    }

    public func gauge(_ name: String, help: String, labels: [(String, String)] = []) -> Gauge {
        let gauge = Gauge(name: name, labels: labels)
        register(gauge, name: name, help: help, type: "gauge")
        return gauge
    }

    /// Creates a histogram; `buckets` are upper bounds in ascending order, without +Inf.
    public func histogram(_ name: String, help: String, buckets: [Double]) -> Histogram {
        let histogram = Histogram(name: name, buckets: buckets)
        register(histogram, name: name, help: help, type: "histogram")
        return histogram
    }

    /// Returns every metric in the Prometheus text format, one HELP and TYPE line per family.
    public func render() -> String {
        families.withLock { families in
            var text = ""
            for family in families {
                text += "# HELP \(family.name) \(escapeHelp(family.help))\n"
                text += "# TYPE \(family.name) \(family.type)\n"
                for series in family.series {
                    text += series.render()
                }
            }
            return text
        }
    }

    fileprivate func register(_ metric: any RenderableMetric, name: String, help: String, type: String) {
        families.withLock { families in
            if let index = families.firstIndex(where: { $0.name == name }) {
                families[index].series.append(metric)
            } else {
                families.append(Family(name: name, help: help, type: type, series: [metric]))
            }
        }
    }

    private func escapeHelp(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
    }
}

protocol RenderableMetric: Sendable {
    func render() -> String
}

/// Returns `{name="value",...}` with values escaped as the text format requires, or "".
func renderLabels(_ labels: [(String, String)]) -> String {
    guard !labels.isEmpty else { return "" }
    let pairs = labels.map { name, value in
        let escaped = value
            .replacingOccurrences(of: "\\", with: "\\\\")
            .replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
        return "\(name)=\"\(escaped)\""
    }
    return "{" + pairs.joined(separator: ",") + "}"
}

/// Formats a sample value: integers without a fraction, others in Swift's shortest form.
func renderValue(_ value: Double) -> String {
    if value.isNaN { return "NaN" }
    if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
    if value == value.rounded() && abs(value) < 1e15 {
        return String(Int64(value))
    }
    return String(value)
}

/// A value that only goes up.
public final class Counter: RenderableMetric {
    private let name: String
    private let labels: [(String, String)]
    private let value = Atomic<UInt64>(0)

    init(name: String, labels: [(String, String)]) {
        self.name = name
        self.labels = labels
    }

    public func increment(by amount: UInt64 = 1) {
        value.add(amount, ordering: .relaxed)
    }

    public var current: UInt64 { value.load(ordering: .relaxed) }

    func render() -> String {
        "\(name)\(renderLabels(labels)) \(current)\n"
    }
}

/// A value that goes up and down.
public final class Gauge: RenderableMetric {
    private let name: String
    private let labels: [(String, String)]
    /// The value's bit pattern, so a Double fits an atomic.
    private let bits = Atomic<UInt64>(0)

    init(name: String, labels: [(String, String)]) {
        self.name = name
        self.labels = labels
    }

    public func set(_ newValue: Double) {
        bits.store(newValue.bitPattern, ordering: .relaxed)
    }

    public var current: Double { Double(bitPattern: bits.load(ordering: .relaxed)) }

    func render() -> String {
        "\(name)\(renderLabels(labels)) \(renderValue(current))\n"
    }
}

/// Observations counted into cumulative buckets, with their sum and count.
public final class Histogram: RenderableMetric {
    private struct State {
        var bucketCounts: [UInt64]
        var sum = 0.0
        var count: UInt64 = 0
    }

    private let name: String
    private let buckets: [Double]
    private let state: Mutex<State>

    init(name: String, buckets: [Double]) {
        self.name = name
        self.buckets = buckets
        self.state = Mutex(State(bucketCounts: Array(repeating: 0, count: buckets.count)))
    }

    public func observe(_ value: Double) {
        state.withLock { state in
            for (index, bound) in buckets.enumerated() where value <= bound {
                state.bucketCounts[index] += 1
            }
            state.sum += value
            state.count += 1
        }
    }

    func render() -> String {
        state.withLock { state in
            var text = ""
            for (index, bound) in buckets.enumerated() {
                text += "\(name)_bucket{le=\"\(renderValue(bound))\"} \(state.bucketCounts[index])\n"
            }
            text += "\(name)_bucket{le=\"+Inf\"} \(state.count)\n"
            text += "\(name)_sum \(renderValue(state.sum))\n"
            text += "\(name)_count \(state.count)\n"
            return text
        }
    }
}

/// Counters that share a name and differ by label values, created on first use.
///
/// Callers must map label values onto a small fixed set (route templates, known
/// methods, status codes), because every combination becomes a series.
public final class LabeledCounter: RenderableMetric {
    private let name: String
    private let labelNames: [String]
    private let series = Mutex<(order: [[String]], values: [[String]: UInt64])>((order: [], values: [:]))

    init(name: String, labelNames: [String]) {
        self.name = name
        self.labelNames = labelNames
    }

    public func increment(_ labelValues: [String], by amount: UInt64 = 1) {
        series.withLock { series in
            if series.values[labelValues] == nil {
                series.order.append(labelValues)
            }
            series.values[labelValues, default: 0] += amount
        }
    }

    func render() -> String {
        series.withLock { series in
            var text = ""
            for values in series.order {
                text += "\(name)\(renderLabels(Array(zip(labelNames, values)))) \(series.values[values] ?? 0)\n"
            }
            return text
        }
    }
}

extension MetricsRegistry {
    public func labeledCounter(_ name: String, help: String, labelNames: [String]) -> LabeledCounter {
        let counter = LabeledCounter(name: name, labelNames: labelNames)
        register(counter, name: name, help: help, type: "counter")
        return counter
    }
}
