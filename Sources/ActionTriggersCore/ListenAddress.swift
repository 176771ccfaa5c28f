/// The `host:port` the HTTP server listens on (`ACTION_TRIGGERS_LISTEN`, `--listen`).
public struct ListenAddress: Sendable, Equatable {
    public let host: String
    public let port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`, `[ipv6]:port` or `:port` (which means 127.0.0.1).
    public static func parse(_ text: String) throws(SettingsError) -> ListenAddress {
        let path = "ACTION_TRIGGERS_LISTEN"
        var host: Substring
        var portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw SettingsError(path: path, message: "must look like [::1]:8080 for an IPv6 address (got \"\(text)\")")
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") else {
                throw SettingsError(path: path, message: "must look like 127.0.0.1:8080 (got \"\(text)\")")
            }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        if host.isEmpty {
            host = "127.0.0.1"
        }
        guard let port = Int(portText), (0...65535).contains(port) else {
            throw SettingsError(path: path, message: "has an invalid port \"\(portText)\": use a number from 0 to 65535")
        }
        return ListenAddress(host: String(host), port: port)
    }

    /// Whether only this machine can reach the address: localhost, 127.0.0.0/8 or ::1.
    public var isLoopback: Bool {
        if host == "localhost" || host == "::1" {
            return true
        }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }
}
