import Foundation
import Testing

@testable import ActionTriggersCore

/// The README's settings table and the keys `Settings.parse` reads cannot drift apart.
@Suite("Settings documentation")
struct SettingsDocumentationTests {
    private static let readme: String = {
        let root = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent()  // ActionTriggersCoreTests
            .deletingLastPathComponent()  // Tests
            .deletingLastPathComponent()
        return (try? String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)) ?? ""
    }()

    @Test("every known key has a README row", arguments: Settings.knownKeys)
    func keyDocumented(key: String) {
        // retry is documented by its fields, retry.max_attempts and so on.
        let row = key == "retry" ? "| `retry.max_attempts` |" : "| `\(key)` |"
        #expect(Self.readme.contains(row), "README.md has no settings row for \(key)")
    }

    @Test("every README row is a known key")
    func rowsKnown() {
        let section = Self.readme.components(separatedBy: "## Settings file").dropFirst().first?
            .components(separatedBy: "\n## ").first ?? ""
        let keys = section.split(separator: "\n")
            .filter { $0.hasPrefix("| `") }
            .compactMap { $0.split(separator: "`").dropFirst().first.map(String.init) }
        #expect(!keys.isEmpty)
        for key in keys {
            let topLevel = String(key.split(separator: ".").first ?? "")
            #expect(Settings.knownKeys.contains(topLevel), "README.md documents \(key), which Settings does not read")
        }
    }
}
