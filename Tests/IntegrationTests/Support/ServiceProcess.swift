import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The `action-triggers serve` executable run as a child process, with its log in a file.
final class ServiceProcess {
    private let process = Process()
    let logFile: URL
    let settingsFile: URL

    /// Starts `serve` against `databaseURL` with the given settings document.
    init(databaseURL: String, settings: String, environment extra: [String: String] = [:]) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("action-triggers-test-" + UUID().uuidString)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        logFile = directory.appendingPathComponent("service.log")
        settingsFile = directory.appendingPathComponent("settings.json")
        try Data(settings.utf8).write(to: settingsFile)
        _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)

        process.executableURL = TestEnvironment.serviceBinary
        process.arguments = ["serve"]
        var environment = ProcessInfo.processInfo.environment
        environment["DATABASE_URL"] = databaseURL
        environment["ACTION_TRIGGERS_SETTINGS"] = settingsFile.path
        environment["ACTION_TRIGGERS_LOG_LEVEL"] = "debug"
        // Port 0: each test's service gets a free port, logged as http.address.
        environment["ACTION_TRIGGERS_LISTEN"] = "127.0.0.1:0"
        environment["ACTION_TRIGGERS_API_TOKEN"] = nil
        for (key, value) in extra {
            environment[key] = value
        }
        process.environment = environment
        let handle = try FileHandle(forWritingTo: logFile)
        process.standardError = handle
        process.standardOutput = handle
        try process.run()
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    var log: String {
        (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
    }

    var isRunning: Bool { process.isRunning }

    /// Waits until the log contains `text` `count` times, failing with the log on timeout.
    func waitForLog(_ text: String, count: Int = 1, timeout: Duration = .seconds(20)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if log.components(separatedBy: text).count - 1 >= count {
                return
            }
            if !process.isRunning {
                throw ServiceProcessError(description: "service exited (status \(process.terminationStatus)) before logging \"\(text)\"; log:\n\(log)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw ServiceProcessError(description: "service did not log \"\(text)\" within \(timeout); log:\n\(log)")
    }

    /// Waits for the service to finish starting: migrated, listening and ready to deliver.
    func waitUntilReady() async throws {
        try await waitForLog("msg=\"listening for changes\"")
    }

    /// Returns the base URL of the service's HTTP server, read from its start-up log line.
    func httpBaseURL() async throws -> String {
        try await waitForLog("msg=\"http server listening\"")
        guard let line = log.split(separator: "\n").first(where: { $0.contains("msg=\"http server listening\"") }),
              let range = line.range(of: "http.address=") else {
            throw ServiceProcessError(description: "no http.address in the log:\n\(log)")
        }
        let address = line[range.upperBound...].prefix { $0 != " " }
        return "http://\(address)"
    }

    /// Sends a signal and waits for the process to exit.
    func stop(signal: Int32 = SIGTERM) {
        guard process.isRunning else { return }
        kill(process.processIdentifier, signal)
        process.waitUntilExit()
    }

    var terminationStatus: Int32 { process.terminationStatus }
}

struct ServiceProcessError: Error, CustomStringConvertible {
    let description: String
}
