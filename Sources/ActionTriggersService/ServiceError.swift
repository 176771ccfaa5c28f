/// An error that stops the service or one of its commands, with a message for the operator.
public enum ServiceError: Error, CustomStringConvertible {
    case startup(String)
    case configuration(String)
    /// A query returned a result of an unexpected shape; the message names the query.
    case unexpectedResult(String)

    public var description: String {
        switch self {
        case .startup(let message): message
        case .configuration(let message): message
        case .unexpectedResult(let message): message
        }
    }
}
