import Foundation

/// Parses an HTTP `Retry-After` value into seconds from `now`.
///
/// Accepts delay-seconds (`120`) and an IMF-fixdate (`Wed, 21 Oct 2015 07:28:00 GMT`)
/// as RFC 9110 section 10.2.3 defines them. Returns `nil` for anything else, and 0
/// for a date in the past.
public func parseRetryAfter(_ value: String, now: Date) -> Double? {
    let text = value.trimmingCharacters(in: .whitespaces)
    if !text.isEmpty, text.allSatisfy({ $0.isASCII && $0.isNumber }) {
        return Double(text)
    }
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "GMT")
    formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
    guard let date = formatter.date(from: text) else { return nil }
    return max(0, date.timeIntervalSince(now))
}
