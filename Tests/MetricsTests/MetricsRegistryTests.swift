import Metrics
import Testing

@Suite("MetricsRegistry")
struct MetricsRegistryTests {
    @Test("families render with HELP, TYPE and labels")
    func rendersFamilies() {
        let registry = MetricsRegistry()
        let succeeded = registry.counter("demo_attempts_total", help: "Attempts.", labels: [("outcome", "succeeded")])
        let failed = registry.counter("demo_attempts_total", help: "Attempts.", labels: [("outcome", "fa\"il\\ed")])
        let inFlight = registry.gauge("demo_in_flight", help: "Requests in flight.")
        succeeded.increment(by: 3)
        failed.increment()
        inFlight.set(-2)

        #expect(registry.render() == """
            # HELP demo_attempts_total Attempts.
            # TYPE demo_attempts_total counter
            demo_attempts_total{outcome="succeeded"} 3
            demo_attempts_total{outcome="fa\\"il\\\\ed"} 1
            # HELP demo_in_flight Requests in flight.
            # TYPE demo_in_flight gauge
            demo_in_flight -2

            """)
    }

    @Test("histogram buckets are cumulative")
    func histogramBuckets() {
        let registry = MetricsRegistry()
        let histogram = registry.histogram("demo_duration_seconds", help: "Durations.", buckets: [0.1, 1])
        histogram.observe(0.05)
        histogram.observe(0.5)
        histogram.observe(2)

        #expect(registry.render() == """
            # HELP demo_duration_seconds Durations.
            # TYPE demo_duration_seconds histogram
            demo_duration_seconds_bucket{le="0.1"} 1
            demo_duration_seconds_bucket{le="1"} 2
            demo_duration_seconds_bucket{le="+Inf"} 3
            demo_duration_seconds_sum 2.55
            demo_duration_seconds_count 3

            """)
    }

    @Test("labeled counters render each combination once")
    func labeledCounter() {
        let registry = MetricsRegistry()
        let requests = registry.labeledCounter("demo_requests_total", help: "Requests.", labelNames: ["route", "status"])
        let ratio = registry.gauge("demo_ratio", help: "A fraction.")
        requests.increment(["/a", "200"])
        requests.increment(["/b", "404"])
        requests.increment(["/a", "200"], by: 2)
        ratio.set(0.25)

        #expect(registry.render() == """
            # HELP demo_requests_total Requests.
            # TYPE demo_requests_total counter
            demo_requests_total{route="/a",status="200"} 3
            demo_requests_total{route="/b",status="404"} 1
            # HELP demo_ratio A fraction.
            # TYPE demo_ratio gauge
            demo_ratio 0.25

            """)
    }
}
