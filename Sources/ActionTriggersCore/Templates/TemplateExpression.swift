/// One `{{ path|filter:"argument" }}` placeholder of a payload template.
public struct TemplateExpression: Sendable, Hashable, CustomStringConvertible {
    /// The dotted path, for example `["instance", "customer", "name"]`.
    public let path: [String]
    public let filters: [TemplateFilter]

    public init(path: [String], filters: [TemplateFilter] = []) {
        self.path = path
        self.filters = filters
    }

    /// The roots a path may start at, and the fields of `event`.
    public static let roots = ["instance", "old", "event"]
    public static let eventFields = ["signal", "model", "id", "created"]

    public var description: String {
        ([path.joined(separator: ".")] + filters.map(\.description)).joined(separator: "|")
    }

    /// Parses the text between `{{` and `}}`.
    ///
    /// The grammar is Django's for variables: a dotted path of identifiers, then
    /// filters separated by `|`, each with an optional `:` argument that is a quoted
    /// string or an integer. Spaces around the parts are allowed.
    public static func parse(_ source: Substring) throws(TemplateSyntaxError) -> TemplateExpression {
        var scanner = TemplateScanner(source)
        scanner.skipSpaces()
        var path = [try scanner.identifier(expected: "a path such as instance.name")]
        while scanner.consume(".") {
            path.append(try scanner.identifier(expected: "a name after '.'"))
        }
        guard roots.contains(path[0]) else {
            throw TemplateSyntaxError(
                "path \(path.joined(separator: ".")) must start with instance, old or event")
        }
        if path[0] == "event" && (path.count != 2 || !eventFields.contains(path[1])) {
            throw TemplateSyntaxError(
                "path \(path.joined(separator: ".")) is not an event field; event fields: \(eventFields.map { "event." + $0 }.joined(separator: ", "))")
        }
        if path.count == 1 {
            throw TemplateSyntaxError("path \(path[0]) needs a column, for example \(path[0]).id")
        }

        var filters: [TemplateFilter] = []
        scanner.skipSpaces()
        while scanner.consume("|") {
            scanner.skipSpaces()
            let name = try scanner.identifier(expected: "a filter name after '|'")
            scanner.skipSpaces()
            var argument: TemplateArgument?
            if scanner.consume(":") {
                scanner.skipSpaces()
                argument = try scanner.argument()
                scanner.skipSpaces()
            }
            filters.append(try TemplateFilter(name: name, argument: argument))
        }
        guard scanner.isAtEnd else {
            throw TemplateSyntaxError("unexpected \(scanner.describeCurrent()) in {{ \(source.trimmingSpaces()) }}")
        }
        return TemplateExpression(path: path, filters: filters)
    }
}

/// A filter argument as written: a quoted string or an integer.
public enum TemplateArgument: Sendable, Equatable {
    case string(String)
    case integer(Int)
}

public struct TemplateSyntaxError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}

/// A cursor over the characters of a placeholder.
struct TemplateScanner {
    private let characters: [Character]
    private var index = 0

    init(_ source: Substring) {
        characters = Array(source)
    }

    var isAtEnd: Bool { index == characters.count }

    mutating func skipSpaces() {
        while index < characters.count, characters[index].isWhitespace {
            index += 1
        }
    }

    mutating func consume(_ character: Character) -> Bool {
        guard index < characters.count, characters[index] == character else {
            return false
        }
        index += 1
        return true
    }

    mutating func identifier(expected: String) throws(TemplateSyntaxError) -> String {
        let start = index
        while index < characters.count, Self.isIdentifierCharacter(characters[index], first: index == start) {
            index += 1
        }
        guard index > start else {
            throw TemplateSyntaxError("expected \(expected), found \(describeCurrent())")
        }
        return String(characters[start..<index])
    }

    mutating func argument() throws(TemplateSyntaxError) -> TemplateArgument {
        guard index < characters.count else {
            throw TemplateSyntaxError("expected a filter argument after ':', found the end of the placeholder")
        }
        let quote = characters[index]
        if quote == "\"" || quote == "'" {
            index += 1
            let start = index
            while index < characters.count, characters[index] != quote {
                index += 1
            }
            guard index < characters.count else {
                throw TemplateSyntaxError("filter argument has no closing \(quote)")
            }
            let text = String(characters[start..<index])
            index += 1
            return .string(text)
        }
        let start = index
        _ = consume("-")
        while index < characters.count, characters[index].isASCII, characters[index].isNumber {
            index += 1
        }
        guard let number = Int(String(characters[start..<index])) else {
            throw TemplateSyntaxError("expected a quoted string or an integer after ':', found \(describeCurrent(at: start))")
        }
        return .integer(number)
    }

    func describeCurrent(at position: Int? = nil) -> String {
        let position = position ?? index
        return position < characters.count ? "'\(characters[position])'" : "the end of the placeholder"
    }

    private static func isIdentifierCharacter(_ character: Character, first: Bool) -> Bool {
        guard character.isASCII else {
            return false
        }
        return character == "_" || character.isLetter || (!first && character.isNumber)
    }
}

extension Substring {
    func trimmingSpaces() -> Substring {
        var result = self
        while result.first?.isWhitespace == true {
            result = result.dropFirst()
        }
        while result.last?.isWhitespace == true {
            result = result.dropLast()
        }
        return result
    }
}
