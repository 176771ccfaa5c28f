import ActionTriggersCore
import Testing

@Suite("ListenAddress")
struct ListenAddressTests {
    @Test("valid forms parse", arguments: [
        ("127.0.0.1:8080", "127.0.0.1", 8080),
        ("localhost:0", "localhost", 0),
        ("[::1]:9000", "::1", 9000),
        (":8080", "127.0.0.1", 8080),
        ("0.0.0.0:80", "0.0.0.0", 80),
    ])
    func valid(text: String, host: String, port: Int) throws {
        #expect(try ListenAddress.parse(text) == ListenAddress(host: host, port: port))
    }

    @Test("invalid forms are rejected", arguments: ["8080", "127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000", "::1:8080", "[::1]8080", "[::1"])
    func invalid(text: String) {
        #expect(throws: SettingsError.self) {
            _ = try ListenAddress.parse(text)
        }
    }

    @Test("loopback is recognized", arguments: [
        ("127.0.0.1", true), ("127.10.0.5", true), ("localhost", true), ("::1", true),
        ("0.0.0.0", false), ("::", false), ("192.0.2.1", false), ("127.0.0", false), ("example.com", false),
    ])
    func loopback(host: String, expected: Bool) {
        #expect(ListenAddress(host: host, port: 1).isLoopback == expected)
    }
}
