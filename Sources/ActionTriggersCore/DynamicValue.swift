/// A named value resolved at delivery time, from the settings file's `dynamic_values`.
///
/// This is the allowlist that the ancestor's `ALLOWED_DYNAMIC_IMPORT_PATHS` is: a
/// config may write `{{ name }}` in webhook headers and broker connection details or
/// parameters only for names listed here, so secrets stay out of configs.
public struct DynamicValue: Sendable, Equatable {
    public enum Source: Sendable, Equatable {
        /// An environment variable of the service process.
        case environment(String)
        /// A file's contents without trailing line breaks, such as a mounted secret.
        case file(String)
        /// The first column of the first row of a read-only query on the service's connection.
        case sql(String)
    }

    public let source: Source
    /// How long a resolved value is reused, in seconds; 0 resolves it for every attempt.
    public let cacheSeconds: Double

    public init(source: Source, cacheSeconds: Double = DynamicValue.defaultCacheSeconds) {
        self.source = source
        self.cacheSeconds = cacheSeconds
    }

    public static let defaultCacheSeconds = 60.0

    /// Returns whether a name has the dotted form of the ancestor's import paths, such as `myapp.utils.get_token`.
    public static func isValidName(_ name: String) -> Bool {
        let segments = name.split(separator: ".", omittingEmptySubsequences: false)
        return segments.allSatisfy { segment in
            guard let first = segment.first, first == "_" || (first.isASCII && first.isLetter) else {
                return false
            }
            return segment.allSatisfy { $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) }
        }
    }

    /// Returns the names of the `{{ name }}` placeholders in a text, in order.
    public static func names(in text: String) -> [String] {
        var names: [String] = []
        _ = substitute(in: text) { name in
            names.append(name)
            return ""
        }
        return names
    }

    /// Replaces each `{{ name }}` placeholder with the value `lookup` gives; other text,
    /// including braces that are not a placeholder, is kept as it is.
    public static func substitute<E: Error>(in text: String, _ lookup: (String) throws(E) -> String) throws(E) -> String {
        var output = ""
        var rest = Substring(text)
        while let open = rest.range(of: "{{"), let close = rest[open.upperBound...].range(of: "}}") {
            let name = String(rest[open.upperBound..<close.lowerBound].trimmingSpaces())
            output += rest[..<open.lowerBound]
            if isValidName(name) {
                output += try lookup(name)
            } else {
                output += rest[open.lowerBound..<close.upperBound]
            }
            rest = rest[close.upperBound...]
        }
        return output + rest
    }
}
