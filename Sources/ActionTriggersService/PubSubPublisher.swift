import ActionTriggersCore
import Foundation
import GoogleAuth
import HTTPClient

/// Publishes messages to Google Cloud Pub/Sub over its REST API.
///
/// With `PUBSUB_EMULATOR_HOST` set, requests go to that host over plain HTTP without
/// credentials, as Google's client libraries do. Otherwise a service account key
/// signs a JWT that is exchanged for an access token, cached until shortly before
/// it expires. Owned by the broker worker's thread.
final class PubSubPublisher {
    private struct CachedToken {
        let token: String
        let expires: Date
    }

    private let http: BlockingHTTP
    private var tokens: [String: CachedToken] = [:]

    static let scope = "https://www.googleapis.com/auth/pubsub"

    init(http: BlockingHTTP) {
        self.http = http
    }

    func publish(
        _ body: [UInt8], to target: PubSubTarget, attributes: [(String, String)], timeout: Duration
    ) throws(PubSubPublishError) {
        let environment = ProcessInfo.processInfo.environment
        let emulator = environment["PUBSUB_EMULATOR_HOST"].flatMap { $0.isEmpty ? nil : $0 }

        var key: ServiceAccountKey?
        if emulator == nil {
            key = try serviceAccountKey(target, environment: environment)
        }
        guard let topicPath = target.topicPath(defaultProject: key?.projectID ?? environment["GOOGLE_CLOUD_PROJECT"]) else {
            throw PubSubPublishError(
                retryable: false,
                message: "no Google Cloud project for topic \(target.topic): set project in conn_details or GOOGLE_CLOUD_PROJECT")
        }
        let base = emulator.map { "http://\($0)" } ?? target.endpointURL ?? "https://pubsub.googleapis.com"

        var headers = [HTTPHeader("Content-Type", "application/json")]
        if let key {
            headers.append(HTTPHeader("Authorization", "Bearer \(try accessToken(key, timeout: timeout))"))
        }
        var attributeObject: [String: String] = [:]
        for (name, value) in attributes {
            attributeObject[name] = value
        }
        let message: [String: Any] = ["data": Data(body).base64EncodedString(), "attributes": attributeObject]
        let requestBody = (try? JSONSerialization.data(withJSONObject: ["messages": [message]], options: [.sortedKeys])) ?? Data()
        let request = HTTPRequest(
            method: "POST", url: "\(base)/v1/\(topicPath):publish", headers: headers, body: Array(requestBody),
            timeout: timeout)

        let response: HTTPResponse
        do {
            response = try http.send(request)
        } catch {
            throw PubSubPublishError(retryable: error.kind != .invalidRequest, message: error.message)
        }
        guard (200...299).contains(response.status) else {
            // Server errors, 408 and 429 pass; other client errors (a missing topic, no permission) do not.
            throw PubSubPublishError(
                retryable: response.status >= 500 || response.status == 408 || response.status == 429,
                message: "publish to \(topicPath) failed: HTTP \(response.status) \(Self.errorMessage(response.body))")
        }
    }

    private func serviceAccountKey(_ target: PubSubTarget, environment: [String: String]) throws(PubSubPublishError) -> ServiceAccountKey {
        guard let path = target.credentialsFile ?? environment["GOOGLE_APPLICATION_CREDENTIALS"] else {
            throw PubSubPublishError(
                retryable: false,
                message: "no Google Cloud credentials: set credentials_file in conn_details, GOOGLE_APPLICATION_CREDENTIALS, "
                    + "or PUBSUB_EMULATOR_HOST for the emulator")
        }
        do {
            return try ServiceAccountKey.parse(try Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            // The file may be mounted later or fixed, so the attempt is retried.
            throw PubSubPublishError(retryable: true, message: "service account key file \(path) could not be read: \(error)")
        }
    }

    /// Returns a cached access token, or exchanges a signed JWT for a new one (RFC 7523).
    private func accessToken(_ key: ServiceAccountKey, timeout: Duration) throws(PubSubPublishError) -> String {
        let cacheKey = "\(key.clientEmail) \(key.tokenURI)"
        if let cached = tokens[cacheKey], cached.expires > Date() {
            return cached.token
        }
        let assertion: String
        do {
            assertion = try key.assertion(scope: Self.scope, issuedAt: Int64(Date().timeIntervalSince1970))
        } catch {
            throw PubSubPublishError(retryable: false, message: error.message)
        }
        let form = "grant_type=\(Self.formEncode("urn:ietf:params:oauth:grant-type:jwt-bearer"))&assertion=\(assertion)"
        let request = HTTPRequest(
            method: "POST", url: key.tokenURI,
            headers: [HTTPHeader("Content-Type", "application/x-www-form-urlencoded")], body: Array(form.utf8),
            timeout: timeout)
        let response: HTTPResponse
        do {
            response = try http.send(request)
        } catch {
            throw PubSubPublishError(retryable: true, message: "token request to \(key.tokenURI) failed: \(error.message)")
        }
        guard (200...299).contains(response.status),
              let object = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any],
              let token = object["access_token"] as? String else {
            throw PubSubPublishError(
                retryable: true,
                message: "token request to \(key.tokenURI) failed: HTTP \(response.status) \(Self.errorMessage(response.body))")
        }
        let lifetime = (object["expires_in"] as? NSNumber)?.doubleValue ?? 3600
        // Renew a minute early, so a token never expires during a request.
        tokens[cacheKey] = CachedToken(token: token, expires: Date().addingTimeInterval(max(lifetime - 60, 0)))
        return token
    }

    /// Returns the `error.message` of a Google API error body, or its first 200 bytes.
    private static func errorMessage(_ body: [UInt8]) -> String {
        if let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] {
            if let error = object["error"] as? [String: Any], let message = error["message"] as? String {
                return message
            }
            if let description = object["error_description"] as? String {
                return description
            }
        }
        return String(decoding: body.prefix(200), as: UTF8.self)
    }

    /// Percent-encodes a form value, keeping only RFC 3986's unreserved characters.
    private static func formEncode(_ text: String) -> String {
        let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
        return text.addingPercentEncoding(withAllowedCharacters: unreserved) ?? text
    }
}

/// A publish that failed; `retryable` is false when no later attempt can succeed.
struct PubSubPublishError: Error, CustomStringConvertible {
    let retryable: Bool
    let message: String
    var description: String { message }
}
