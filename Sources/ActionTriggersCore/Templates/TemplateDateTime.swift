/// A date, time or timestamp as PostgreSQL writes it in JSON, for the `date` filter.
///
/// Accepted: `2026-12-04` (date), `10:30:00.5` (time), `2026-12-04T10:30:00.123456`
/// (timestamp) and the same with `+00:00` or `Z` (timestamptz, which the capture
/// trigger writes in UTC). Anything else, such as `infinity`, is not a date, and
/// the filter gives "" as Django's does for a value that is not a date.
struct TemplateDateTime: Equatable {
    var year = 1, month = 1, day = 1
    var hour = 0, minute = 0, second = 0, microsecond = 0
    /// Offset from UTC in seconds; nil for values without a time zone.
    var utcOffset: Int?
    var hasDate = false
    var hasTime = false

    init?(parsing text: String) {
        var scanner = DigitScanner(Array(text.utf8))
        if let year = scanner.number(digits: 4), scanner.consume("-"),
           let month = scanner.number(digits: 2), scanner.consume("-"),
           let day = scanner.number(digits: 2) {
            guard (1...12).contains(month), (1...Self.daysInMonth(month, year: year)).contains(day) else {
                return nil
            }
            (self.year, self.month, self.day, hasDate) = (year, month, day, true)
            if scanner.isAtEnd {
                return
            }
            guard scanner.consume("T") || scanner.consume(" ") else {
                return nil
            }
        } else {
            scanner = DigitScanner(Array(text.utf8))
        }

        guard let hour = scanner.number(digits: 2), scanner.consume(":"),
              let minute = scanner.number(digits: 2), scanner.consume(":"),
              let second = scanner.number(digits: 2), hour <= 24, minute < 60, second < 60 else {
            return nil
        }
        (self.hour, self.minute, self.second, hasTime) = (hour, minute, second, true)
        if scanner.consume(".") {
            guard let (fraction, digits) = scanner.digits(), digits <= 6 else {
                return nil
            }
            microsecond = fraction * Self.powerOfTen(6 - digits)
        }
        if scanner.consume("Z") {
            utcOffset = 0
        } else if let sign = scanner.consumeSign() {
            guard let hours = scanner.number(digits: 2) else {
                return nil
            }
            var minutes = 0
            if scanner.consume(":") {
                guard let value = scanner.number(digits: 2) else {
                    return nil
                }
                minutes = value
            }
            utcOffset = sign * (hours * 3600 + minutes * 60)
        }
        guard scanner.isAtEnd else {
            return nil
        }
    }

    /// Formats with Django's date format characters (all of them, in English); a
    /// backslash escapes the next character and any other character is copied.
    ///
    /// Values carry a UTC offset but no zone name, so `e` and `T` give `UTC` (or
    /// `UTC+05:30` for another offset) where Django would name the zone.
    func formatted(_ format: String) -> String {
        var output = ""
        var escaped = false
        for character in format {
            if escaped {
                output.append(character)
                escaped = false
            } else if character == "\\" {
                escaped = true
            } else {
                output += formatted(character) ?? String(character)
            }
        }
        return output
    }

    private static let monthNames = [
        "January", "February", "March", "April", "May", "June",
        "July", "August", "September", "October", "November", "December",
    ]
    private static let weekdayNames = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    /// Month abbreviations in Associated Press style, Django's `N`.
    private static let pressMonthNames = [
        "Jan.", "Feb.", "March", "April", "May", "June", "July", "Aug.", "Sept.", "Oct.", "Nov.", "Dec.",
    ]

    private func formatted(_ character: Character) -> String? {
        switch character {
        case "Y": return Self.padded(year, 4)
        case "y": return Self.padded(year % 100, 2)
        case "m": return Self.padded(month, 2)
        case "n": return String(month)
        case "F", "E": return Self.monthNames[month - 1]
        case "N": return Self.pressMonthNames[month - 1]
        case "M": return String(Self.monthNames[month - 1].prefix(3))
        case "b": return String(Self.monthNames[month - 1].prefix(3)).lowercased()
        case "d": return Self.padded(day, 2)
        case "j": return String(day)
        case "D": return String(Self.weekdayNames[weekday].prefix(3))
        case "l": return Self.weekdayNames[weekday]
        case "w": return String((weekday + 1) % 7)
        case "z": return String(dayOfYear)
        case "t": return String(Self.daysInMonth(month, year: year))
        case "L": return Self.isLeapYear(year) ? "True" : "False"
        case "S": return ordinalSuffix
        case "H": return Self.padded(hour, 2)
        case "G": return String(hour)
        case "h": return Self.padded(hour12, 2)
        case "g": return String(hour12)
        case "i": return Self.padded(minute, 2)
        case "s": return Self.padded(second, 2)
        case "u": return Self.padded(microsecond, 6)
        case "A": return hour < 12 ? "AM" : "PM"
        case "a": return hour < 12 ? "a.m." : "p.m."
        case "f": return minute == 0 ? String(hour12) : "\(hour12):\(Self.padded(minute, 2))"
        case "P": return meridiemTime
        case "O": return utcOffset.map { Self.offsetText($0, separator: "") } ?? ""
        case "Z": return utcOffset.map(String.init) ?? ""
        case "e", "T": return utcOffset.map { $0 == 0 ? "UTC" : "UTC" + Self.offsetText($0, separator: ":") } ?? ""
        case "I": return utcOffset == nil ? "" : "0"
        case "r":
            let offset = utcOffset.map { Self.offsetText($0, separator: "") } ?? "-0000"
            return formatted("D, d M Y H:i:s") + " " + offset
        case "W": return String(isoWeek.week)
        case "o": return String(isoWeek.year)
        case "U": return String(secondsSinceEpoch)
        case "c": return isoText
        default: return nil
        }
    }

    /// ISO 8601 as Python's `isoformat` writes it, which Django's `c` uses.
    private var isoText: String {
        var text = ""
        if hasDate {
            text = "\(Self.padded(year, 4))-\(Self.padded(month, 2))-\(Self.padded(day, 2))"
        }
        if hasTime {
            text += (hasDate ? "T" : "") + "\(Self.padded(hour, 2)):\(Self.padded(minute, 2)):\(Self.padded(second, 2))"
            if microsecond > 0 {
                text += "." + Self.padded(microsecond, 6)
            }
            if let utcOffset {
                text += Self.offsetText(utcOffset, separator: ":")
            }
        }
        return text
    }

    private var hour12: Int { hour % 12 == 0 ? 12 : hour % 12 }

    /// Django's `P`: `1 a.m.`, `1:30 p.m.`, or `midnight` and `noon`.
    private var meridiemTime: String {
        if minute == 0 && hour == 0 {
            return "midnight"
        }
        if minute == 0 && hour == 12 {
            return "noon"
        }
        let time = minute == 0 ? String(hour12) : "\(hour12):\(Self.padded(minute, 2))"
        return time + " " + (hour < 12 ? "a.m." : "p.m.")
    }

    /// The ISO 8601 week number and the year it belongs to.
    private var isoWeek: (year: Int, week: Int) {
        let week = (dayOfYear - (weekday + 1) + 10) / 7
        if week < 1 {
            return (year - 1, Self.isoWeeks(in: year - 1))
        }
        if week > Self.isoWeeks(in: year) {
            return (year + 1, 1)
        }
        return (year, week)
    }

    /// 53 when the year starts on a Thursday, or on a Wednesday in a leap year; else 52.
    private static func isoWeeks(in year: Int) -> Int {
        var january = TemplateDateTime.date(year: year, month: 1, day: 1)
        january.hasDate = true
        let startsOnThursday = january.weekday == 3
        let leapStartsOnWednesday = isLeapYear(year) && january.weekday == 2
        return startsOnThursday || leapStartsOnWednesday ? 53 : 52
    }

    private init(dateOnly: Void) {}

    private static func date(year: Int, month: Int, day: Int) -> TemplateDateTime {
        var value = TemplateDateTime(dateOnly: ())
        (value.year, value.month, value.day) = (year, month, day)
        return value
    }

    private var ordinalSuffix: String {
        if (11...13).contains(day % 100) {
            return "th"
        }
        switch day % 10 {
        case 1: return "st"
        case 2: return "nd"
        case 3: return "rd"
        default: return "th"
        }
    }

    /// Days since 1970-01-01 in the proleptic Gregorian calendar.
    private var daysSinceEpoch: Int {
        let shiftedYear = month <= 2 ? year - 1 : year
        let era = (shiftedYear >= 0 ? shiftedYear : shiftedYear - 399) / 400
        let yearOfEra = shiftedYear - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// 0 for Monday through 6 for Sunday; 1970-01-01 was a Thursday.
    private var weekday: Int { ((daysSinceEpoch % 7) + 7 + 3) % 7 }

    private var dayOfYear: Int {
        (1..<month).reduce(day) { $0 + Self.daysInMonth($1, year: year) }
    }

    private var secondsSinceEpoch: Int {
        daysSinceEpoch * 86_400 + hour * 3600 + minute * 60 + second - (utcOffset ?? 0)
    }

    private static func offsetText(_ offset: Int, separator: String) -> String {
        let sign = offset < 0 ? "-" : "+"
        let magnitude = abs(offset)
        return sign + padded(magnitude / 3600, 2) + separator + padded(magnitude % 3600 / 60, 2)
    }

    private static func padded(_ value: Int, _ width: Int) -> String {
        let text = String(value)
        return String(repeating: "0", count: max(0, width - text.count)) + text
    }

    private static func powerOfTen(_ exponent: Int) -> Int {
        (0..<exponent).reduce(1) { result, _ in result * 10 }
    }

    static func isLeapYear(_ year: Int) -> Bool {
        year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
    }

    static func daysInMonth(_ month: Int, year: Int) -> Int {
        switch month {
        case 2: isLeapYear(year) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }
}

/// A cursor over ASCII digits and separators.
private struct DigitScanner {
    let bytes: [UInt8]
    var index = 0

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    var isAtEnd: Bool { index == bytes.count }

    mutating func consume(_ character: Character) -> Bool {
        guard index < bytes.count, let ascii = character.asciiValue, bytes[index] == ascii else {
            return false
        }
        index += 1
        return true
    }

    mutating func consumeSign() -> Int? {
        if consume("+") {
            return 1
        }
        return consume("-") ? -1 : nil
    }

    /// Reads exactly `digits` digits.
    mutating func number(digits: Int) -> Int? {
        guard index + digits <= bytes.count else {
            return nil
        }
        var value = 0
        for byte in bytes[index..<index + digits] {
            guard (0x30...0x39).contains(byte) else {
                return nil
            }
            value = value * 10 + Int(byte - 0x30)
        }
        index += digits
        return value
    }

    /// Reads one or more digits; returns the value and the digit count.
    mutating func digits() -> (Int, Int)? {
        let start = index
        var value = 0
        while index < bytes.count, (0x30...0x39).contains(bytes[index]), index - start < 18 {
            value = value * 10 + Int(bytes[index] - 0x30)
            index += 1
        }
        return index > start ? (value, index - start) : nil
    }
}
