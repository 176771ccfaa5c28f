@testable import ActionTriggersService
import Foundation
import Testing

/// The JSON the delivery worker sends with its attempt records.
@Suite("Attempt record JSON")
struct AttemptRecordTests {
    @Test("matches JSONEncoder's output")
    func matchesJSONEncoder() throws {
        let records = [
            AttemptRecord(
                id: 9_007_199_254_740_993, attempt: 2, status: "pending", delaySecs: 0.000_01, statusCode: nil,
                error: "timed out: \"slow\"\nline\u{1}", startedAt: 1_764_900_000.123_456, durationMs: 10_000.5,
                outcome: "retry"),
            AttemptRecord(
                id: 1, attempt: 1, status: "succeeded", delaySecs: 0, statusCode: 200, error: nil,
                startedAt: 1, durationMs: 0.25, outcome: "succeeded"),
        ]

        let written = try JSONSerialization.jsonObject(with: Data(try AttemptRecord.jsonArray(records).utf8)) as? [[String: Any]]
        let expected = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(records)) as? [[String: Any]]

        // JSONEncoder leaves out nil properties, and jsonb_to_recordset reads a missing
        // key as it reads null, so the nulls are dropped before comparing.
        let withoutNulls = try #require(written).map { $0.filter { !($0.value is NSNull) } as NSDictionary }
        #expect(withoutNulls == (try #require(expected)).map { $0 as NSDictionary })
    }

    @Test("empty list is an empty array")
    func emptyList() throws {
        #expect(try AttemptRecord.jsonArray([]) == "[]")
    }

    @Test("infinite delay is rejected")
    func infiniteDelay() {
        let record = AttemptRecord(
            id: 1, attempt: 1, status: "pending", delaySecs: .infinity, statusCode: nil, error: nil, startedAt: 1,
            durationMs: 1, outcome: "retry")
        #expect(throws: ServiceError.self) { try AttemptRecord.jsonArray([record]) }
    }
}
