/// A config's `payload`, parsed once: JSON whose strings may hold `{{ path }}` placeholders.
///
/// Rendering works on the parsed JSON, so a value with quotes, backslashes or line
/// breaks can never break the body, and nothing is HTML-escaped. A string that is
/// exactly one placeholder takes the typed value; a placeholder inside longer text
/// is written as text. Object members keep the order the user wrote.
public indirect enum PayloadTemplate: Sendable {
    case constant(JSONValue)
    case placeholder(TemplateExpression)
    case text([TemplateTextPart])
    case array([PayloadTemplate])
    case object([(key: String, value: PayloadTemplate)])

    /// Parses every string of a payload; errors name the member path, such as `payload.customer_name`.
    public static func compile(_ value: JSONValue, path: String = "payload") throws(TemplateError) -> PayloadTemplate {
        switch value {
        case .string(let text):
            do {
                return try compileString(text)
            } catch {
                throw TemplateError(path: path, message: error.message)
            }
        case .array(let items):
            var compiled: [PayloadTemplate] = []
            for (index, item) in items.enumerated() {
                compiled.append(try compile(item, path: "\(path)[\(index)]"))
            }
            return .array(compiled)
        case .object(let object):
            var members: [(key: String, value: PayloadTemplate)] = []
            for member in object.members {
                members.append((member.key, try compile(member.value, path: "\(path).\(member.key)")))
            }
            return .object(members)
        default:
            return .constant(value)
        }
    }

    /// Parses one string into literal text and placeholders.
    static func compileString(_ text: String) throws(TemplateSyntaxError) -> PayloadTemplate {
        if text.contains("{%") {
            throw TemplateSyntaxError(
                "\(jsonQuoted(text)) has a Django template tag ({% ... %}), which payloads do not support: use {{ path|filter }} placeholders")
        }
        var parts: [TemplateTextPart] = []
        var rest = Substring(text)
        while let open = rest.range(of: "{{") {
            guard let close = rest[open.upperBound...].range(of: "}}") else {
                throw TemplateSyntaxError("\(jsonQuoted(text)) has {{ without a closing }}")
            }
            if open.lowerBound > rest.startIndex {
                parts.append(.literal(String(rest[..<open.lowerBound])))
            }
            parts.append(.expression(try TemplateExpression.parse(rest[open.upperBound..<close.lowerBound])))
            rest = rest[close.upperBound...]
        }
        if !rest.isEmpty {
            parts.append(.literal(String(rest)))
        }

        switch parts.count {
        case 0:
            return .constant(.string(""))
        case 1:
            switch parts[0] {
            case .expression(let expression): return .placeholder(expression)
            case .literal(let literal): return .constant(.string(literal))
            }
        default:
            return .text(parts)
        }
    }

    /// Every placeholder, in order.
    public var expressions: [TemplateExpression] {
        switch self {
        case .constant:
            return []
        case .placeholder(let expression):
            return [expression]
        case .text(let parts):
            return parts.compactMap {
                if case .expression(let expression) = $0 {
                    return expression
                }
                return nil
            }
        case .array(let items):
            return items.flatMap(\.expressions)
        case .object(let members):
            return members.flatMap(\.value.expressions)
        }
    }

    /// Renders the payload; `resolve` gives the value of a path, null when it has none.
    public func render(_ resolve: (TemplateExpression) -> JSONValue) -> JSONValue {
        switch self {
        case .constant(let value):
            return value
        case .placeholder(let expression):
            return Self.evaluate(expression, resolve)
        case .text(let parts):
            var output = ""
            for part in parts {
                switch part {
                case .literal(let literal):
                    output += literal
                case .expression(let expression):
                    // Null interpolates as nothing; `default_if_none` gives it a text.
                    output += Self.evaluate(expression, resolve).text ?? ""
                }
            }
            return .string(output)
        case .array(let items):
            return .array(items.map { $0.render(resolve) })
        case .object(let members):
            return .object(JSONObject(members.map { (key: $0.key, value: $0.value.render(resolve)) }))
        }
    }

    private static func evaluate(_ expression: TemplateExpression, _ resolve: (TemplateExpression) -> JSONValue) -> JSONValue {
        expression.filters.reduce(resolve(expression)) { value, filter in filter.apply(to: value) }
    }

    private static func jsonQuoted(_ text: String) -> String {
        var output = ""
        JSONValue.writeString(text, to: &output)
        return output
    }
}

/// A piece of a string with placeholders.
public enum TemplateTextPart: Sendable {
    case literal(String)
    case expression(TemplateExpression)
}

/// A payload that cannot be compiled; `path` names the member, such as `payload.customer_name`.
public struct TemplateError: Error, Sendable, Equatable, CustomStringConvertible {
    public let path: String
    public let message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { "\(path): \(message)" }
}
