import ActionTriggersCore
import Foundation
import Testing

@Suite("parseRetryAfter")
struct RetryAfterTests {
    let now = Date(timeIntervalSince1970: 1_445_412_480)  // Wed, 21 Oct 2015 07:28:00 GMT

    @Test("delay-seconds", arguments: [("0", 0.0), ("2", 2.0), (" 120 ", 120.0)])
    func seconds(text: String, expected: Double) {
        #expect(parseRetryAfter(text, now: now) == expected)
    }

    @Test("HTTP date in the future")
    func futureDate() {
        #expect(parseRetryAfter("Wed, 21 Oct 2015 07:28:30 GMT", now: now) == 30)
    }

    @Test("HTTP date in the past is zero")
    func pastDate() {
        #expect(parseRetryAfter("Wed, 21 Oct 2015 07:00:00 GMT", now: now) == 0)
    }

    @Test("invalid values are ignored", arguments: ["", "soon", "-5", "1.5", "Wed 21 Oct 2015"])
    func invalid(text: String) {
        #expect(parseRetryAfter(text, now: now) == nil)
    }
}
