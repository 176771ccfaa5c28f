/// A parsed JSON value (see `JSONParser`).
///
/// Numbers keep their literal text and objects keep the order of their members, so
/// a value parsed and written again with `jsonText` is the same JSON, digit for digit.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(JSONNumber)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    /// The JSON type name, for error messages.
    public var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .number: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }

    /// Whether the value is a string or a number, the values broker settings take as text.
    public var isScalarText: Bool {
        switch self {
        case .string, .number: true
        default: false
        }
    }

    /// The members of an object; nil for any other value.
    public var objectValue: JSONObject? {
        if case .object(let object) = self {
            return object
        }
        return nil
    }

    /// The compact JSON text of the value: members in order, numbers as written.
    public var jsonText: String {
        var output = ""
        write(to: &output)
        return output
    }

    func write(to output: inout String) {
        switch self {
        case .null:
            output += "null"
        case .bool(let flag):
            output += flag ? "true" : "false"
        case .number(let number):
            output += number.text
        case .string(let text):
            JSONValue.writeString(text, to: &output)
        case .array(let items):
            output += "["
            for (index, item) in items.enumerated() {
                if index > 0 {
                    output += ","
                }
                item.write(to: &output)
            }
            output += "]"
        case .object(let object):
            output += "{"
            for (index, member) in object.members.enumerated() {
                if index > 0 {
                    output += ","
                }
                JSONValue.writeString(member.key, to: &output)
                output += ":"
                member.value.write(to: &output)
            }
            output += "}"
        }
    }

    /// Writes a JSON string literal, escaping only what RFC 8259 requires.
    static func writeString(_ text: String, to output: inout String) {
        output += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": output += "\\\""
            case "\\": output += "\\\\"
            case "\n": output += "\\n"
            case "\r": output += "\\r"
            case "\t": output += "\\t"
            case "\u{08}": output += "\\b"
            case "\u{0C}": output += "\\f"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    output += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    output.unicodeScalars.append(scalar)
                }
            }
        }
        output += "\""
    }
}

/// A JSON number kept as its literal text, so bigint and numeric values never pass through `Double`.
public struct JSONNumber: Sendable, Equatable, CustomStringConvertible, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral {
    /// The literal as written, for example `-12.50` or `1e3`.
    public let text: String

    /// Creates a number from a literal that `JSONParser` has already checked.
    public init(text: String) {
        self.text = text
    }

    public init(integerLiteral value: Int64) {
        text = String(value)
    }

    public init(floatLiteral value: Double) {
        text = String(value)
    }

    /// The nearest `Double`, for settings and comparisons; infinite for literals beyond its range.
    public var double: Double { Double(text) ?? .nan }

    public var description: String { text }

    /// Compares numeric values, as JSON does: `1.0` equals `1`.
    public static func == (lhs: JSONNumber, rhs: JSONNumber) -> Bool {
        lhs.text == rhs.text || lhs.double == rhs.double
    }
}

/// A JSON object whose members keep the order in which they were written.
public struct JSONObject: Sendable, Equatable, ExpressibleByDictionaryLiteral {
    public private(set) var members: [(key: String, value: JSONValue)]

    public init(_ members: [(key: String, value: JSONValue)] = []) {
        self.members = members
    }

    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        members = elements.map { (key: $0.0, value: $0.1) }
    }

    public var keys: [String] { members.map(\.key) }
    public var isEmpty: Bool { members.isEmpty }
    public var count: Int { members.count }

    /// Returns the value of the first member with this name.
    public subscript(key: String) -> JSONValue? {
        members.first { $0.key == key }?.value
    }

    /// Appends a member; the caller keeps names unique, as `JSONParser` does.
    public mutating func append(_ key: String, _ value: JSONValue) {
        members.append((key: key, value: value))
    }

    /// Compares members by name, ignoring their order, as JSON does.
    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        guard lhs.members.count == rhs.members.count else {
            return false
        }
        return lhs.members.allSatisfy { member in rhs[member.key] == member.value }
    }
}
