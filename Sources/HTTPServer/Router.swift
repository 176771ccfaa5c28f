/// Matches requests to handlers by method and route template, such as `/api/action-triggers/{id}`.
///
/// A trailing slash is optional. An unknown path gets 404 and a known path with
/// another method gets 405 with `Allow`, both as `{"detail": "..."}`. The template,
/// never the raw path, is what a handler reports in logs and metrics.
public struct Router: Sendable {
    public typealias Handler = @Sendable (HTTPServerRequest, RouteMatch) -> HTTPServerResponse

    private struct Route: Sendable {
        let method: String
        let template: String
        let segments: [Substring]
        let handler: Handler
    }

    private var routes: [Route] = []

    public init() {}

    public mutating func add(_ method: String, _ template: String, _ handler: @escaping Handler) {
        routes.append(Route(method: method, template: template, segments: Self.segments(template), handler: handler))
    }

    /// Returns the response of the matching route (or 404 or 405) and the template of
    /// the matched path, `nil` for an unknown path.
    public func route(_ request: HTTPServerRequest) -> (response: HTTPServerResponse, template: String?) {
        let path = Self.segments(request.path)
        var allowed: [String] = []
        var matchedTemplate: String?
        for route in routes {
            guard let parameters = Self.match(route.segments, path) else { continue }
            if route.method == request.method || (route.method == "GET" && request.method == "HEAD") {
                return (route.handler(request, RouteMatch(template: route.template, parameters: parameters)), route.template)
            }
            allowed.append(route.method)
            matchedTemplate = matchedTemplate ?? route.template
        }
        if allowed.isEmpty {
            return (.detail(404, "Not found."), nil)
        }
        let allow = Array(Set(allowed)).sorted().joined(separator: ", ")
        return (.detail(405, "Method \"\(request.method)\" not allowed.", headers: [("Allow", allow)]), matchedTemplate)
    }

    /// Returns the template of the first route whose path matches, whatever its method,
    /// or nil for an unknown path. Labels the metrics of requests that are never routed.
    public func template(matching path: String) -> String? {
        let segments = Self.segments(path)
        return routes.first { Self.match($0.segments, segments) != nil }?.template
    }

    private static func segments(_ path: String) -> [Substring] {
        path.split(separator: "/", omittingEmptySubsequences: true)
    }

    private static func match(_ template: [Substring], _ path: [Substring]) -> [String: String]? {
        guard template.count == path.count else { return nil }
        var parameters: [String: String] = [:]
        for (expected, actual) in zip(template, path) {
            if expected.hasPrefix("{") && expected.hasSuffix("}") {
                parameters[String(expected.dropFirst().dropLast())] = String(actual)
            } else if expected != actual {
                return nil
            }
        }
        return parameters
    }
}

/// The route a request matched, with its template parameters.
public struct RouteMatch: Sendable {
    public let template: String
    public let parameters: [String: String]
}
