import Foundation
import HTTPServer

/// The service's HTTP routes: the config and delivery REST API, health, readiness and metrics.
///
/// When an API token is configured, every path under `/api/` needs
/// `Authorization: Bearer <token>`; the comparison takes the same time whatever
/// the token's first differing byte, so it cannot be guessed byte by byte.
struct HTTPEndpoints: Sendable {
    let health: ServiceHealth
    let metrics: ServiceMetrics
    let configAPI: ConfigAPI
    let deliveryAPI: DeliveryAPI
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
        deliveryAPI.register(in: &router)
        configAPI.register(in: &router)
        router.add("GET", "/metrics") { _, _ in
            refreshScrapeTimeGauges()
            return HTTPServerResponse(
                status: 200, headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
                body: Array(metrics.registry.render().utf8))
        }
        return router
    }

    /// Returns the response to a request, checking the API token and the body size
    /// first, and counts it in the request metrics whatever its status.
    func respond(to request: HTTPServerRequest, with router: Router) -> HTTPServerResponse {
        let started = ContinuousClock.now
        let response: HTTPServerResponse
        let template: String?
        if let rejection = rejection(of: request) {
            response = rejection
            template = router.template(matching: request.path)
        } else {
            (response, template) = router.route(request)
        }
        let elapsed = ContinuousClock.now - started
        metrics.recordHTTPRequest(
            template: template, method: request.method, status: response.status,
            durationSeconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        return response
    }

    /// Returns the 401 for an API request without the right token or the 413 for a
    /// body over the limit, or nil when the request may be routed.
    private func rejection(of request: HTTPServerRequest) -> HTTPServerResponse? {
        if let apiToken, request.path == "/api" || request.path.hasPrefix("/api/"),
           !Self.bearerTokenMatches(request.header("Authorization"), expected: apiToken) {
            return .detail(401, "Authentication credentials were not provided or are invalid.",
                           headers: [("WWW-Authenticate", "Bearer")])
        }
        if request.bodyTooLarge {
            return .detail(413, "The request body is larger than the server accepts.")
        }
        return nil
    }

    /// Reads the gauges that come from the database; on failure they keep their last values.
    private func refreshScrapeTimeGauges() {
        metrics.listenerConnected.set(health.isReady(.listener) ? 1 : 0)
        let row = try? configAPI.pool.withConnection { connection in
            try connection.queryPrepared("""
                SELECT count(*) AS pending,
                       coalesce(extract(epoch FROM now() - min(created_at)), 0)::bigint AS oldest,
                       pg_notification_queue_usage() AS queue_usage
                FROM action_triggers.event
                WHERE dispatched_at IS NULL
                """).singleRow()
        }
        if let row, let pending = try? row.int64("pending"), let oldest = try? row.int64("oldest"),
           let usage = try? row.double("queue_usage") {
            metrics.outboxBacklog.set(Double(pending))
            metrics.outboxOldestAge.set(Double(oldest))
            metrics.notificationQueueUsage.set(usage)
        }
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
