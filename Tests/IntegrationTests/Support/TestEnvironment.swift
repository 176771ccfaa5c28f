import Foundation

/// Locations and servers the integration tests need, set up by `scripts/test`.
enum TestEnvironment {
    struct MissingServer: Error, CustomStringConvertible {
        let description: String
    }

    /// Returns the admin URL of the PostgreSQL server the tests may create databases on.
    ///
    /// A missing variable fails the test instead of skipping it, so a CI run without
    /// a database can never pass.
    static func adminDatabaseURL() throws -> String {
        guard let url = ProcessInfo.processInfo.environment["ACTION_TRIGGERS_TEST_DATABASE_URL"], !url.isEmpty else {
            throw MissingServer(description:
                "ACTION_TRIGGERS_TEST_DATABASE_URL is not set: run the tests with scripts/test, which starts PostgreSQL")
        }
        return url
    }

    /// The package's root folder, found from this file's path.
    static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // Support
        .deletingLastPathComponent()  // IntegrationTests
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()

    /// The `action-triggers` executable built by `swift build`, or `ACTION_TRIGGERS_BINARY`.
    static var serviceBinary: URL {
        if let path = ProcessInfo.processInfo.environment["ACTION_TRIGGERS_BINARY"], !path.isEmpty {
            return URL(fileURLWithPath: path)
        }
        return packageRoot.appendingPathComponent(".build/debug/action-triggers")
    }
}

extension TestEnvironment {
    /// Returns a non-empty environment variable that `scripts/test` sets, or throws
    /// naming the variable and what `scripts/test` provides for it.
    private static func required(_ variable: String, providedBy what: String) throws -> String {
        guard let value = ProcessInfo.processInfo.environment[variable], !value.isEmpty else {
            throw MissingServer(description: "\(variable) is not set: run the tests with scripts/test, which \(what)")
        }
        return value
    }

    private static func requiredPort(_ variable: String, providedBy what: String) throws -> Int {
        let text = try required(variable, providedBy: what)
        guard let port = Int(text) else {
            throw MissingServer(description: "\(variable) is \"\(text)\", not a port number")
        }
        return port
    }

    /// Returns the port of the Redis server on 127.0.0.1 that `scripts/test` starts.
    static func redisPort() throws -> Int {
        try requiredPort("ACTION_TRIGGERS_TEST_REDIS_PORT", providedBy: "starts Redis")
    }

    /// Returns the AMQP port of the RabbitMQ server on 127.0.0.1 that `scripts/test` starts
    /// (user and password `guest`, virtual host `/`).
    static func rabbitMQPort() throws -> Int {
        try requiredPort("ACTION_TRIGGERS_TEST_RABBITMQ_PORT", providedBy: "starts RabbitMQ")
    }

    /// Returns the URL of moto, the SQS and SNS server that `scripts/test` starts on 127.0.0.1.
    static func motoURL() throws -> String {
        try required("ACTION_TRIGGERS_TEST_MOTO_URL", providedBy: "starts moto")
    }

    /// Returns the Python of the test virtual environment, which has `standardwebhooks`.
    static func python() throws -> String {
        try required("ACTION_TRIGGERS_TEST_PYTHON", providedBy: "installs standardwebhooks")
    }
}
