// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "action-triggers",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "action-triggers", targets: ["action-triggers"]),
    ],
    targets: [
        // C libraries from Debian, wrapped as system-library targets.
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        // Fixed-argument wrappers for libcurl's variadic setters, which Swift cannot call.
        .target(name: "CCurlShim", dependencies: ["CCurl"]),
        .systemLibrary(name: "CMicroHTTPD", pkgConfig: "libmicrohttpd", providers: [.apt(["libmicrohttpd-dev"])]),
        // Starts libmicrohttpd (MHD_start_daemon is variadic) and assembles whole requests.
        .target(name: "CHTTPServerShim", dependencies: ["CMicroHTTPD"]),
        // hiredis: the standard C client for Redis.
        // No pkgConfig: hiredis's adds -D_FILE_OFFSET_BITS=64, which SwiftPM rejects with a
        // warning, and its headers and library are in the default paths.
        .systemLibrary(name: "CHiredis", providers: [.apt(["libhiredis-dev"])]),
        // rabbitmq-c: the standard C client for RabbitMQ.
        .systemLibrary(name: "CRabbitMQ", pkgConfig: "librabbitmq", providers: [.apt(["librabbitmq-dev"])]),
        // Logs in (amqp_login is variadic) and waits for publisher confirms frame by frame.
        .target(name: "CRabbitMQShim", dependencies: ["CRabbitMQ"]),
        // librdkafka: the standard Kafka client, with a mock cluster for tests.
        .systemLibrary(name: "CKafka", pkgConfig: "rdkafka", providers: [.apt(["librdkafka-dev"])]),
        // Produces with headers and waits for delivery reports, which arrive in a C callback.
        .target(name: "CKafkaShim", dependencies: ["CKafka"]),
        // OpenSSL's libcrypto, for AWS Signature Version 4.
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),

        .target(name: "Logging"),
        .target(name: "Metrics"),
        .target(name: "PostgresClient", dependencies: ["CLibPQ"]),
        .target(name: "HTTPClient", dependencies: ["CCurl", "CCurlShim"]),
        .target(name: "HTTPServer", dependencies: ["CHTTPServerShim"]),
        .target(name: "RedisClient", dependencies: ["CHiredis"]),
        .target(name: "RabbitMQClient", dependencies: ["CRabbitMQShim"]),
        .target(name: "KafkaClient", dependencies: ["CKafkaShim"]),
        .target(name: "Digest", dependencies: ["CCrypto"]),
        .target(name: "AWSClient", dependencies: ["Digest"]),
        .target(name: "GoogleAuth", dependencies: ["CCrypto"]),
        // The domain: configs, settings, policies. No I/O.
        .target(name: "ActionTriggersCore"),
        .target(
            name: "ActionTriggersService",
            dependencies: [
                "ActionTriggersCore", "PostgresClient", "HTTPClient", "HTTPServer", "RedisClient", "RabbitMQClient", "KafkaClient",
                "AWSClient", "GoogleAuth", "Digest", "Logging",
                "Metrics",
            ],
            resources: [.copy("sql"), .copy("openapi.json")]
        ),
        .executableTarget(name: "action-triggers", dependencies: ["ActionTriggersService", "Logging"]),

        .testTarget(name: "ActionTriggersCoreTests", dependencies: ["ActionTriggersCore"]),
        .testTarget(name: "LoggingTests", dependencies: ["Logging"]),
        .testTarget(name: "AWSClientTests", dependencies: ["AWSClient"]),
        .testTarget(name: "MetricsTests", dependencies: ["Metrics"]),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["ActionTriggersService", "PostgresClient", "RedisClient", "RabbitMQClient", "KafkaClient", "AWSClient", "Logging"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
