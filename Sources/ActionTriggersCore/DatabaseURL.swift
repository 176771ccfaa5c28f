import Foundation

/// Checks a `DATABASE_URL` before libpq parses it.
///
/// libpq reads a bare word as a database name and reports a missing Unix socket,
/// which hides the real mistake. The value itself never appears in the message,
/// because it may contain a password.
public enum DatabaseURL {
    /// Returns why the value is not a libpq URI or conninfo string, or `nil` when it is one.
    public static func problem(_ value: String) -> String? {
        let trimmed = value.trimmingCharacters(in: .whitespaces)
        if let schemeEnd = trimmed.range(of: "://") {
            let scheme = trimmed[..<schemeEnd.lowerBound].lowercased()
            guard scheme == "postgresql" || scheme == "postgres" else {
                return "the database URL has the scheme \"\(scheme)\"; use postgresql://user@host:5432/database"
            }
            return nil
        }
        guard trimmed.contains("=") else {
            return "the database URL is neither a postgresql:// URI nor a key=value conninfo string such as \"host=127.0.0.1 dbname=app\""
        }
        return nil
    }
}
