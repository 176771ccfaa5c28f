/// An invalid settings file: the key path and what is wrong with its value.
public struct SettingsError: Error, Equatable, CustomStringConvertible {
    public let path: String
    public let message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    public var description: String {
        path.isEmpty ? "invalid settings: \(message)" : "invalid settings: \(path) \(message)"
    }
}
