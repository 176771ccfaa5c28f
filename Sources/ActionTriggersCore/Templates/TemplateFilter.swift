/// A filter of a payload placeholder, named and behaving as in Django templates.
///
/// Text filters (`upper`, `lower`, `title`, `truncatechars`) turn numbers and
/// booleans into their JSON text and leave null as null, so `default_if_none`
/// can still follow them.
public enum TemplateFilter: Sendable, Hashable, CustomStringConvertible {
    /// `default:"x"`: replaces null, false, 0, "" and empty lists or objects.
    case defaultValue(String)
    /// `default_if_none:"x"`: replaces null only.
    case defaultIfNone(String)
    case upper
    case lower
    /// `title`: capitalizes each word, keeping `O'Brien` and `1st` as Django does.
    case title
    /// `length`: characters of a string, items of a list or object; 0 otherwise.
    case length
    /// `truncatechars:N`: at most N characters, the last one `…` when cut.
    case truncateChars(Int)
    /// `date:"FORMAT"`: Django's date format characters applied to a date, time or timestamp.
    case date(String)

    public static let names = ["default", "default_if_none", "upper", "lower", "title", "length", "truncatechars", "date"]

    /// Creates a filter from its name and argument, checking that the argument fits the filter.
    public init(name: String, argument: TemplateArgument?) throws(TemplateSyntaxError) {
        switch (name, argument) {
        case ("default", .string(let text)?):
            self = .defaultValue(text)
        case ("default_if_none", .string(let text)?):
            self = .defaultIfNone(text)
        case ("date", .string(let format)?):
            self = .date(format)
        case ("default", _), ("default_if_none", _), ("date", _):
            throw TemplateSyntaxError("filter \(name) needs a quoted string argument, for example \(name):\"x\"")
        case ("truncatechars", .integer(let count)?) where count >= 1:
            self = .truncateChars(count)
        case ("truncatechars", .string(let text)?) where (Int(text) ?? 0) >= 1:
            self = .truncateChars(Int(text) ?? 1)
        case ("truncatechars", _):
            throw TemplateSyntaxError("filter truncatechars needs a positive integer argument, for example truncatechars:20")
        case ("upper", nil):
            self = .upper
        case ("lower", nil):
            self = .lower
        case ("title", nil):
            self = .title
        case ("length", nil):
            self = .length
        case ("upper", _), ("lower", _), ("title", _), ("length", _):
            throw TemplateSyntaxError("filter \(name) takes no argument")
        default:
            throw TemplateSyntaxError(
                "unknown filter \(name); known filters: \(Self.names.joined(separator: ", "))")
        }
    }

    public var description: String {
        switch self {
        case .defaultValue(let text): "default:\"\(text)\""
        case .defaultIfNone(let text): "default_if_none:\"\(text)\""
        case .upper: "upper"
        case .lower: "lower"
        case .title: "title"
        case .length: "length"
        case .truncateChars(let count): "truncatechars:\(count)"
        case .date(let format): "date:\"\(format)\""
        }
    }

    /// Applies the filter to a value.
    public func apply(to value: JSONValue) -> JSONValue {
        switch self {
        case .defaultValue(let text):
            return value.isFalsy ? .string(text) : value
        case .defaultIfNone(let text):
            return value == .null ? .string(text) : value
        case .upper:
            return mapText(value) { $0.uppercased() }
        case .lower:
            return mapText(value) { $0.lowercased() }
        case .title:
            return mapText(value, Self.titleCased)
        case .length:
            return .number(JSONNumber(integerLiteral: Int64(value.length)))
        case .truncateChars(let count):
            return mapText(value) { Self.truncated($0, to: count) }
        case .date(let format):
            guard let text = value.text, let moment = TemplateDateTime(parsing: text) else {
                return .string("")
            }
            return .string(moment.formatted(format))
        }
    }

    private func mapText(_ value: JSONValue, _ transform: (String) -> String) -> JSONValue {
        guard let text = value.text else {
            return .null
        }
        return .string(transform(text))
    }

    /// Capitalizes the first letter of each run of letters and lowercases the rest,
    /// like Python's `str.title`, then lowercases a letter after an apostrophe that
    /// follows a lowercase letter or after a digit, like Django's `title`.
    static func titleCased(_ text: String) -> String {
        var output: [Character] = []
        var previous: Character?
        for character in text {
            let startsWord = !(previous?.isLetter ?? false)
            if !character.isLetter {
                output.append(character)
            } else if startsWord {
                output.append(Character(character.uppercased()))
            } else {
                output.append(Character(character.lowercased()))
            }
            previous = character
        }
        for index in output.indices where output[index].isUppercase && index > 0 {
            let before = output[index - 1]
            let apostropheAfterLowercase = before == "'" && index > 1 && output[index - 2].isLowercase
            if apostropheAfterLowercase || before.isNumber {
                output[index] = Character(output[index].lowercased())
            }
        }
        return String(output)
    }

    /// Cuts text longer than `count` Unicode code points (Python's `len`) to
    /// `count - 1` of them followed by `…`.
    static func truncated(_ text: String, to count: Int) -> String {
        let scalars = text.unicodeScalars
        guard scalars.count > count else {
            return text
        }
        var view = String.UnicodeScalarView(scalars.prefix(count - 1))
        view.append("…")
        return String(view)
    }
}

extension JSONValue {
    /// Whether Django's `default` filter replaces the value.
    var isFalsy: Bool {
        switch self {
        case .null: true
        case .bool(let flag): !flag
        case .number(let number): number.double == 0
        case .string(let text): text.isEmpty
        case .array(let items): items.isEmpty
        case .object(let object): object.isEmpty
        }
    }

    /// The value as text: a string as it is, anything else but null as JSON text.
    public var text: String? {
        switch self {
        case .null: nil
        case .string(let text): text
        default: jsonText
        }
    }

    /// The length Python's `len` gives: code points of a string, items of a container.
    var length: Int {
        switch self {
        case .string(let text): text.unicodeScalars.count
        case .array(let items): items.count
        case .object(let object): object.count
        default: 0
        }
    }
}
