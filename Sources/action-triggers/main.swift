import ActionTriggersCore
import ActionTriggersService
import Dispatch
import Foundation
import Logging
import PostgresClient

#if canImport(Glibc)
import Glibc
#endif

let usage = """
    action-triggers — turns PostgreSQL row changes into webhooks and broker messages.

    Usage:
      action-triggers serve   [--database-url URL] [--listen HOST:PORT] [--settings FILE]
      action-triggers migrate [--database-url URL]
      action-triggers uninstall --yes [--database-url URL]
      action-triggers version
      action-triggers COMMAND --help

    Environment (flags override it):
      DATABASE_URL               libpq URI or conninfo of the application's database (required)
      ACTION_TRIGGERS_SETTINGS   path of the JSON settings file (optional)
      ACTION_TRIGGERS_LISTEN     host:port of the HTTP server (default 127.0.0.1:8080)
      ACTION_TRIGGERS_LOG_LEVEL  trace, debug, info, warning or error (default info)
      ACTION_TRIGGERS_API_TOKEN  when set, /api/ requests need "Authorization: Bearer <token>";
                                 without it, serve listens on loopback addresses only
    """

let commandHelp: [String: String] = [
    "serve": """
        Usage: action-triggers serve [--database-url URL] [--listen HOST:PORT] [--settings FILE]

        Applies pending migrations, then captures row changes and delivers them until
        SIGTERM or SIGINT. Stopping lets requests in flight finish for
        shutdown_grace_secs of the settings (10 by default), then hands the rest back.

          --database-url URL   libpq URI or conninfo (default: $DATABASE_URL)
          --listen HOST:PORT   address of the HTTP server (default: $ACTION_TRIGGERS_LISTEN or 127.0.0.1:8080)
          --settings FILE      JSON settings file (default: $ACTION_TRIGGERS_SETTINGS; none means defaults)
        """,
    "migrate": """
        Usage: action-triggers migrate [--database-url URL]

        Creates or upgrades the action_triggers schema and exits. Safe to run again
        and from several instances at once.

          --database-url URL   libpq URI or conninfo (default: $DATABASE_URL)
        """,
    "uninstall": """
        Usage: action-triggers uninstall --yes [--database-url URL]

        Removes every capture trigger and the action_triggers schema, with its
        configs, outbox and delivery log, in one transaction. The application's
        tables and rows stay as they are. Stop every serve process first, or it
        installs the schema again. Without --yes, prints what it would do and exits 2.

          --yes                confirm the removal
          --database-url URL   libpq URI or conninfo (default: $DATABASE_URL)
        """,
    "version": """
        Usage: action-triggers version

        Prints the version of this build.
        """,
]

/// Prints a message to stderr and exits with status 2 (usage) or 1 (failure).
func fail(_ message: String, usageError: Bool = false) -> Never {
    FileHandle.standardError.write(Data(("action-triggers: " + message + "\n").utf8))
    exit(usageError ? 2 : 1)
}

/// Parses `--name value` and `--name=value` flags; rejects unknown ones.
/// Flags in `switches` take no value and are stored as "true".
func parseFlags(
    _ arguments: ArraySlice<String>, allowed: Set<String>, switches: Set<String> = [], command: String
) -> [String: String] {
    var flags: [String: String] = [:]
    var index = arguments.startIndex
    while index < arguments.endIndex {
        let argument = arguments[index]
        if argument == "--help" || argument == "-h" {
            print(commandHelp[command] ?? usage)
            exit(0)
        }
        guard argument.hasPrefix("--") else {
            fail("unexpected argument \"\(argument)\" for \(command); see action-triggers \(command) --help", usageError: true)
        }
        var name = String(argument.dropFirst(2))
        var inlineValue: String?
        if let equals = name.firstIndex(of: "=") {
            inlineValue = String(name[name.index(after: equals)...])
            name = String(name[..<equals])
        }
        if switches.contains(name) && inlineValue == nil {
            flags[name] = "true"
            index += 1
            continue
        }
        guard allowed.contains(name) else {
            fail("unknown option --\(name) for \(command); see action-triggers \(command) --help", usageError: true)
        }
        let value: String
        if let inlineValue {
            value = inlineValue
        } else {
            index += 1
            guard index < arguments.endIndex, !arguments[index].hasPrefix("--") else {
                fail("--\(name) needs a value; see action-triggers \(command) --help", usageError: true)
            }
            value = arguments[index]
        }
        guard !value.isEmpty else {
            fail("--\(name) needs a non-empty value; see action-triggers \(command) --help", usageError: true)
        }
        flags[name] = value
        index += 1
    }
    return flags
}

func databaseURL(_ flags: [String: String]) -> String {
    guard let url = flags["database-url"] ?? ProcessInfo.processInfo.environment["DATABASE_URL"], !url.isEmpty else {
        fail("no database given: set DATABASE_URL or pass --database-url", usageError: true)
    }
    if let problem = DatabaseURL.problem(url) {
        fail("invalid DATABASE_URL or --database-url: \(problem)", usageError: true)
    }
    return url
}

func logLevel() -> Logger.Level {
    guard let name = ProcessInfo.processInfo.environment["ACTION_TRIGGERS_LOG_LEVEL"], !name.isEmpty else { return .info }
    guard let level = Logger.Level(name: name) else {
        fail("invalid ACTION_TRIGGERS_LOG_LEVEL \"\(name)\": use trace, debug, info, warning or error", usageError: true)
    }
    return level
}

func loadSettings(_ flags: [String: String]) -> Settings {
    guard let path = flags["settings"] ?? ProcessInfo.processInfo.environment["ACTION_TRIGGERS_SETTINGS"], !path.isEmpty else {
        return Settings()
    }
    let absolutePath = URL(fileURLWithPath: path).standardizedFileURL.path
    guard let data = FileManager.default.contents(atPath: absolutePath) else {
        fail("cannot read the settings file \(absolutePath): it does not exist or is not readable")
    }
    do {
        return try Settings.parse(data)
    } catch {
        fail("\(absolutePath): \(error.description)")
    }
}

func runServe(_ flags: [String: String]) -> Never {
    let level = logLevel()
    let logger = Logger(component: "service", level: level)
    let settings = loadSettings(flags)
    let listenText = flags["listen"] ?? ProcessInfo.processInfo.environment["ACTION_TRIGGERS_LISTEN"] ?? "127.0.0.1:8080"
    let listen: ListenAddress
    do {
        listen = try ListenAddress.parse(listenText.isEmpty ? "127.0.0.1:8080" : listenText)
    } catch {
        fail("invalid --listen or \(error.description.replacingOccurrences(of: "invalid settings: ", with: ""))", usageError: true)
    }
    // An empty value means no token, as in env files that list every variable.
    let token = ProcessInfo.processInfo.environment["ACTION_TRIGGERS_API_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
    let service = Service(
        configuration: .init(databaseURL: databaseURL(flags), settings: settings, listen: listen, apiToken: token),
        logLevel: level)

    do {
        try service.start()
    } catch {
        logger.error("service failed to start", ["error": String(describing: error)])
        exit(1)
    }

    signal(SIGTERM, SIG_IGN)
    signal(SIGINT, SIG_IGN)
    let stopRequested = DispatchSemaphore(value: 0)
    let sources = [SIGTERM, SIGINT].map { number in
        let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
        source.setEventHandler { stopRequested.signal() }
        source.resume()
        return source
    }
    // The signal sources must outlive the wait: an optimized build would free them early.
    withExtendedLifetime(sources) {
        stopRequested.wait()
    }
    logger.info("stopping")
    let stopped = service.stopAndWait(timeout: settings.shutdownGrace + 5)
    logger.info(stopped ? "stopped" : "stopped before every thread finished")
    exit(0)
}

func runMigrate(_ flags: [String: String]) -> Never {
    let logger = Logger(component: "migrate", level: logLevel())
    do {
        let connection = try PostgresConnection(conninfo: databaseURL(flags), applicationName: "action-triggers/migrate")
        let applied = try Migrator.migrate(connection, logger: logger)
        logger.info(applied.isEmpty ? "schema is up to date" : "schema migrated", ["migrations.applied": applied.count])
        exit(0)
    } catch {
        logger.error("migration failed", ["error": String(describing: error)])
        exit(1)
    }
}

func runUninstall(_ flags: [String: String]) -> Never {
    let logger = Logger(component: "uninstall", level: logLevel())
    guard flags["yes"] == "true" else {
        printUninstallPlan(flags)
    }
    do {
        let connection = try PostgresConnection(conninfo: databaseURL(flags), applicationName: "action-triggers/uninstall")
        _ = try Uninstaller.uninstall(connection, logger: logger)
        exit(0)
    } catch let error as PostgresError where error.sqlState == "42501" {
        logger.error("uninstall failed, nothing was removed; run it as the owner of the tables or as a superuser", [
            "error": String(describing: error),
        ])
        exit(1)
    } catch {
        logger.error("uninstall failed, nothing was removed", ["error": String(describing: error)])
        exit(1)
    }
}

/// Prints what `uninstall --yes` would remove and exits 2, changing nothing.
func printUninstallPlan(_ flags: [String: String]) -> Never {
    let summary = "uninstall drops every capture trigger and the action_triggers schema with its configs, outbox "
        + "and delivery log; run it again with --yes to do that"
    let plan: Uninstaller.Plan
    do {
        let connection = try PostgresConnection(conninfo: databaseURL(flags), applicationName: "action-triggers/uninstall")
        plan = try Uninstaller.plan(connection)
    } catch {
        fail("\(summary). Listing what it would remove failed: \(error)", usageError: true)
    }
    var lines = ["Without --yes, nothing was changed. With --yes, uninstall would remove:"]
    if !plan.installed {
        lines.append("  nothing: the action_triggers schema does not exist")
    } else {
        for trigger in plan.triggers {
            lines.append("  trigger \(trigger.name) on \(trigger.table)")
        }
        lines.append("  schema action_triggers, with its configs, outbox and delivery log")
    }
    FileHandle.standardError.write(Data((lines.joined(separator: "\n") + "\n").utf8))
    exit(2)
}

let arguments = CommandLine.arguments.dropFirst()
guard let command = arguments.first else {
    FileHandle.standardError.write(Data((usage + "\n").utf8))
    exit(2)
}
let rest = arguments.dropFirst()

switch command {
case "serve":
    runServe(parseFlags(rest, allowed: ["database-url", "listen", "settings"], command: "serve"))
case "migrate":
    runMigrate(parseFlags(rest, allowed: ["database-url"], command: "migrate"))
case "uninstall":
    runUninstall(parseFlags(rest, allowed: ["database-url"], switches: ["yes"], command: "uninstall"))
case "version", "--version":
    _ = parseFlags(rest, allowed: [], command: "version")
    print(Version.current)
case "--help", "-h", "help":
    if let topic = rest.first, let help = commandHelp[topic] {
        print(help)
    } else {
        print(usage)
    }
default:
    fail("unknown command \"\(command)\"; commands: serve, migrate, uninstall, version", usageError: true)
}
