import Foundation
import HTTPServer

/// The service's HTTP routes: the config REST API, health, readiness and metrics.
///
/// When an API token is configured, every path under `/api/` needs
/// `Authorization: Bearer <token>`; the comparison takes the same time whatever
/// the token's first differing byte, so it cannot be guessed byte by byte.
struct HTTPEndpoints: Sendable {
    let health: ServiceHealth
    let metrics: ServiceMetrics
    let configAPI: ConfigAPI
    let apiToken: String?

    func makeRouter() -> Router {
        var router = Router()
        router.add("GET", "/healthz") { _, _ in
            .json(200, #"{"status": "ok"}"#)
        }
        router.add("GET", "/readyz") { _, _ in
            let notReady = health.notReady
            if notReady.isEmpty {
                return .json(200, #"{"status": "ready"}"#)
            }
            let names = notReady.map { jsonString($0.rawValue) }.joined(separator: ", ")
            return .json(503, "{\"status\": \"not ready\", \"not_ready\": [\(names)]}")
        }
        configAPI.register(in: &router)
        router.add("GET", "/metrics") { _, _ in
            HTTPServerResponse(
                status: 200, headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
                body: Array(metrics.registry.render().utf8))
        }
        return router
    }

    /// Returns the response to a request, checking the API token first.
    func respond(to request: HTTPServerRequest, with router: Router) -> HTTPServerResponse {
        if let apiToken, request.path == "/api" || request.path.hasPrefix("/api/") {
            guard Self.bearerTokenMatches(request.header("Authorization"), expected: apiToken) else {
                return .detail(401, "Authentication credentials were not provided or are invalid.",
                               headers: [("WWW-Authenticate", "Bearer")])
            }
        }
        if request.bodyTooLarge {
            return .detail(413, "The request body is larger than the server accepts.")
        }
        return router.respond(to: request)
    }

    static func bearerTokenMatches(_ header: String?, expected: String) -> Bool {
        guard let header, header.hasPrefix("Bearer ") else { return false }
        let presented = Array(header.dropFirst("Bearer ".count).utf8)
        let configured = Array(expected.utf8)
        var difference = presented.count ^ configured.count
        for index in 0..<max(presented.count, configured.count) {
            let left = index < presented.count ? presented[index] : 0
            let right = index < configured.count ? configured[index] : 0
            difference |= Int(left ^ right)
        }
        return difference == 0
    }
}
