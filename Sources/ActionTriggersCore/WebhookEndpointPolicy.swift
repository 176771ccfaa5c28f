import Foundation

/// Decides whether the service may connect to a webhook URL.
///
/// The URL must be an absolute `http://` or `https://` URL. When the settings list
/// `whitelisted_webhook_endpoint_patterns`, it must also match one of those regular
/// expressions from its first character, as the ancestor's Python `re.match` does.
/// So a pattern that should cover only one host ends with `/` or `$`. The same rules
/// run in SQL when a config is saved (`action_triggers.webhook_url_error`).
public struct WebhookEndpointPolicy: Sendable {
    private let patterns: [String]?
    private let expressions: [NSRegularExpression]?

    /// Compiles the patterns; `nil` allows every http(s) URL.
    public init(patterns: [String]?) throws(SettingsError) {
        self.patterns = patterns
        guard let patterns else {
            self.expressions = nil
            return
        }
        var compiled: [NSRegularExpression] = []
        for (index, pattern) in patterns.enumerated() {
            do {
                compiled.append(try NSRegularExpression(pattern: "^(?:" + pattern + ")"))
            } catch {
                throw SettingsError(
                    path: "whitelisted_webhook_endpoint_patterns[\(index)]",
                    message: "is not a valid regular expression: \(pattern)")
            }
        }
        self.expressions = compiled
    }

    /// Returns why the URL is not allowed, or `nil` when it is.
    public func rejection(for url: String) -> String? {
        guard url.wholeMatch(of: #/https?:\/\/[^\/?#\s]+([\/?#]\S*)?/#) != nil else {
            return "\(redactURL(url)) is not an absolute http:// or https:// URL"
        }
        guard let expressions else { return nil }
        let whole = NSRange(url.startIndex..., in: url)
        for expression in expressions where expression.firstMatch(in: url, options: .anchored, range: whole) != nil {
            return nil
        }
        return "\(redactURL(url)) does not match any of whitelisted_webhook_endpoint_patterns in the settings file"
    }
}

/// Returns a URL without its user information, query and fragment, for logs and errors.
///
/// Those parts often carry tokens, and log lines and the delivery log must not.
public func redactURL(_ url: String) -> String {
    var text = Substring(url)
    if let end = text.firstIndex(where: { $0 == "?" || $0 == "#" }) {
        text = text[..<end]
    }
    if let schemeEnd = text.range(of: "://") {
        let authorityStart = schemeEnd.upperBound
        let authorityEnd = text[authorityStart...].firstIndex(of: "/") ?? text.endIndex
        if let at = text[authorityStart..<authorityEnd].lastIndex(of: "@") {
            text = text[..<authorityStart] + text[text.index(after: at)...]
        }
    }
    return String(text)
}
