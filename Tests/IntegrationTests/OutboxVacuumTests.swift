@testable import ActionTriggersService
import Testing

/// When the service vacuums the outbox on its own.
@Suite("Outbox vacuum policy")
struct OutboxVacuumTests {
    @Test("few changes start no vacuum")
    func fewChanges() {
        #expect(!OutboxVacuum.isDue(changesSinceLast: 999, sinceLastRun: nil, tableRows: -1))
    }

    @Test("a never-analyzed table uses the minimum")
    func neverAnalyzed() {
        #expect(OutboxVacuum.isDue(changesSinceLast: 1_000, sinceLastRun: nil, tableRows: -1))
        #expect(OutboxVacuum.isDue(changesSinceLast: 1_000, sinceLastRun: nil, tableRows: 0))
    }

    @Test("threshold grows with the table")
    func largeTable() {
        #expect(!OutboxVacuum.isDue(changesSinceLast: 99_999, sinceLastRun: .seconds(60), tableRows: 1_000_000))
        #expect(OutboxVacuum.isDue(changesSinceLast: 100_000, sinceLastRun: .seconds(60), tableRows: 1_000_000))
    }

    @Test("threshold is the minimum or a tenth of the table")
    func threshold() {
        #expect(OutboxVacuum.threshold(tableRows: -1) == 1_000)
        #expect(OutboxVacuum.threshold(tableRows: 5_000) == 1_000)
        #expect(OutboxVacuum.threshold(tableRows: 50_000) == 5_000)
        #expect(OutboxVacuum.threshold(tableRows: 1_000_000) == 100_000)
    }

    @Test("runs are at least a second apart")
    func minimumInterval() {
        #expect(!OutboxVacuum.isDue(changesSinceLast: 50_000, sinceLastRun: .milliseconds(500), tableRows: 0))
        #expect(OutboxVacuum.isDue(changesSinceLast: 50_000, sinceLastRun: .seconds(1), tableRows: 0))
    }

    @Test("crossing the minimum reports once")
    func crossingReportsOnce() {
        let vacuum = OutboxVacuum(logger: .init(component: "test", level: .error))
        #expect(!vacuum.rowsChanged(950))
        #expect(vacuum.rowsChanged(50))
        #expect(!vacuum.rowsChanged(50))
    }

    @Test("first vacuum analyzes")
    func firstVacuumAnalyzes() {
        #expect(OutboxVacuum.needsAnalyze(tableRows: -1, analyzedRows: nil))
        #expect(OutboxVacuum.needsAnalyze(tableRows: 1_000_000, analyzedRows: nil))
    }

    @Test("analyze again once the table doubled")
    func analyzeAfterDoubling() {
        #expect(!OutboxVacuum.needsAnalyze(tableRows: 199_999, analyzedRows: 100_000))
        #expect(OutboxVacuum.needsAnalyze(tableRows: 200_000, analyzedRows: 100_000))
    }

    @Test("small tables analyze again at 1,000 rows")
    func analyzeSmallTable() {
        #expect(!OutboxVacuum.needsAnalyze(tableRows: 999, analyzedRows: 0))
        #expect(OutboxVacuum.needsAnalyze(tableRows: 1_000, analyzedRows: 0))
    }
}
