@testable import ActionTriggersService
import Testing

/// When the service vacuums the outbox on its own.
@Suite("Outbox vacuum policy")
struct OutboxVacuumTests {
    @Test("few deliveries start no vacuum")
    func fewDeliveries() {
        #expect(!OutboxVacuum.isDue(finishedSinceLast: 9_999, sinceLastRun: nil, tableRows: -1))
    }

    @Test("a never-analyzed table uses the minimum")
    func neverAnalyzed() {
        #expect(OutboxVacuum.isDue(finishedSinceLast: 10_000, sinceLastRun: nil, tableRows: -1))
    }

    @Test("threshold grows with the table")
    func largeTable() {
        #expect(!OutboxVacuum.isDue(finishedSinceLast: 99_999, sinceLastRun: .seconds(60), tableRows: 1_000_000))
        #expect(OutboxVacuum.isDue(finishedSinceLast: 100_000, sinceLastRun: .seconds(60), tableRows: 1_000_000))
    }

    @Test("runs are at least a second apart")
    func minimumInterval() {
        #expect(!OutboxVacuum.isDue(finishedSinceLast: 50_000, sinceLastRun: .milliseconds(500), tableRows: 0))
        #expect(OutboxVacuum.isDue(finishedSinceLast: 50_000, sinceLastRun: .seconds(1), tableRows: 0))
    }

    @Test("crossing the minimum reports once")
    func crossingReportsOnce() {
        let vacuum = OutboxVacuum(logger: .init(component: "test", level: .error))
        #expect(!vacuum.deliveriesFinished(9_000))
        #expect(vacuum.deliveriesFinished(1_000))
        #expect(!vacuum.deliveriesFinished(1_000))
    }
}
