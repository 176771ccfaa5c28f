import Foundation
import Testing

@testable import ActionTriggersCore

/// The settings tables of docs/configuration.md and the keys `Settings.parse` reads
/// cannot drift apart, and every default written there is the code's default.
@Suite("Settings documentation")
struct SettingsDocumentationTests {
    private static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // ActionTriggersCoreTests
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()

    private static let document: String = {
        let url = packageRoot.appendingPathComponent("docs/configuration.md")
        return (try? String(contentsOf: url, encoding: .utf8)) ?? ""
    }()

    /// One row of a settings table: `| key | type | default | example | meaning |`.
    struct Row {
        let key: String
        let cells: [String]

        var type: String { cells.count > 1 ? cells[1] : "" }
        var defaultValue: String { cells.count > 2 ? cells[2] : "" }
        var example: String { cells.count > 3 ? cells[3] : "" }
        var meaning: String { cells.count > 4 ? cells[4] : "" }
    }

    /// Returns the rows of every table in the "## Settings file" section.
    private static func rows() -> [Row] {
        let section = document.components(separatedBy: "\n## Settings file\n").dropFirst().first?
            .components(separatedBy: "\n## ").first ?? ""
        return section.split(separator: "\n")
            .filter { $0.hasPrefix("| `") }
            .map { line in
                // Split on " | " so pipes inside backquoted regular expressions stay whole.
                let cells = line.dropFirst(2).dropLast(2).components(separatedBy: " | ")
                    .map { $0.trimmingCharacters(in: .whitespaces) }
                let key = cells[0].trimmingCharacters(in: CharacterSet(charactersIn: "`"))
                return Row(key: key, cells: cells)
            }
    }

    /// The keys the tables must document: every top-level key, with `retry` given
    /// by its fields.
    private static let expectedKeys: [String] = Settings.knownKeys.flatMap { key in
        key == "retry" ? Settings.knownRetryKeys.map { "retry.\($0)" } : [key]
    }

    /// Returns how the default cell of `key` must start, taken from `Settings()`.
    private static func codeDefault(_ key: String) -> String? {
        let settings = Settings()
        switch key {
        case "whitelisted_webhook_endpoint_patterns":
            return settings.whitelistedWebhookEndpointPatterns == nil ? "none" : nil
        case "whitelisted_content_types":
            return settings.whitelistedContentTypes == nil ? "none" : nil
        case "max_webhook_timeout": return format(settings.maxWebhookTimeout)
        case "max_broker_timeout": return format(settings.maxBrokerTimeout)
        case "retry.max_attempts": return String(settings.retry.maxAttempts)
        case "retry.base_delay_secs": return format(settings.retry.baseDelay)
        case "retry.max_delay_secs": return format(settings.retry.maxDelay)
        case "retry.jitter": return format(settings.retry.jitter)
        case "poll_interval_secs": return format(settings.pollInterval)
        case "dispatch_batch_size": return String(settings.dispatchBatchSize)
        case "delivery_concurrency": return String(settings.deliveryConcurrency)
        case "dispatch_hold": return "`\"\(settings.dispatchHold.rawValue)\"`"
        case "shutdown_grace_secs": return format(settings.shutdownGrace)
        case "retention_days": return format(settings.retentionDays)
        case "dynamic_values": return settings.dynamicValues.isEmpty ? "`{}`" : nil
        case "brokers": return settings.brokers.isEmpty ? "`{}`" : nil
        case "dynamic_values.<name>.cache_secs": return format(DynamicValue.defaultCacheSeconds)
        default: return nil
        }
    }

    private static func format(_ number: Double) -> String {
        number.rounded() == number ? String(Int(number)) : String(number)
    }

    @Test("every known key has a row", arguments: expectedKeys)
    func keyDocumented(key: String) {
        #expect(Self.rows().contains { $0.key == key }, "docs/configuration.md has no settings row for \(key)")
    }

    @Test("every row is a known key")
    func rowsKnown() {
        let rows = Self.rows()
        #expect(rows.count >= Self.expectedKeys.count)
        for row in rows {
            let parts = row.key.split(separator: ".").map(String.init)
            let topLevel = parts.first ?? ""
            #expect(Settings.knownKeys.contains(topLevel), "docs/configuration.md documents \(row.key), which Settings does not read")
            if topLevel == "retry" {
                #expect(parts.count == 2, "retry fields have no subfields: \(row.key)")
                #expect(Settings.knownRetryKeys.contains(parts.last ?? ""), "unknown retry field \(row.key)")
            }
        }
    }

    @Test("every row states type, default, example and meaning")
    func rowsComplete() {
        for row in Self.rows() {
            #expect(row.cells.count == 5, "row \(row.key) has \(row.cells.count) cells, not 5")
            #expect(!row.type.isEmpty, "row \(row.key) has no type")
            #expect(!row.defaultValue.isEmpty, "row \(row.key) has no default")
            #expect(!row.example.isEmpty, "row \(row.key) has no example")
            #expect(!row.meaning.isEmpty, "row \(row.key) has no meaning")
        }
    }

    @Test("documented defaults match the code", arguments: expectedKeys + ["dynamic_values.<name>.cache_secs"])
    func defaultMatches(key: String) throws {
        let expected = try #require(Self.codeDefault(key), "no code default known for \(key): add it to codeDefault")
        let row = try #require(Self.rows().first { $0.key == key }, "no row for \(key)")
        #expect(row.defaultValue == expected || row.defaultValue.hasPrefix(expected + ":"),
                "default of \(key) is \"\(row.defaultValue)\" in docs/configuration.md, but \(expected) in the code")
    }

    @Test("every example value is accepted by the parser", arguments: expectedKeys)
    func exampleParses(key: String) throws {
        let row = try #require(Self.rows().first { $0.key == key })
        let value = row.example.trimmingCharacters(in: CharacterSet(charactersIn: "`"))
        let parts = key.split(separator: ".")
        let document = parts.count == 2 ? #"{"\#(parts[0])": {"\#(parts[1])": \#(value)}}"# : #"{"\#(key)": \#(value)}"#
        // Each example is parsed alone, so base_delay_secs's must not exceed the default max_delay_secs.
        #expect(throws: Never.self, "example of \(key): \(document)") { try Settings.parse(Data(document.utf8)) }
    }

    @Test("JSON examples in the document parse as settings")
    func jsonBlocksParse() throws {
        let blocks = Self.document.components(separatedBy: "```json\n").dropFirst()
            .compactMap { $0.components(separatedBy: "\n```").first }
        #expect(!blocks.isEmpty)
        for block in blocks {
            #expect(throws: Never.self, "\(block)") { try Settings.parse(Data(block.utf8)) }
        }
    }

    @Test("deploy/settings.json parses")
    func deploySettingsParse() throws {
        let data = try Data(contentsOf: Self.packageRoot.appendingPathComponent("deploy/settings.json"))
        let settings = try Settings.parse(data)
        #expect(settings.brokers.count == 3)
        #expect(settings.whitelistedWebhookEndpointPatterns == ["http://demo-receiver:8000/"])
    }
}
