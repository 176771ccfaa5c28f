import Foundation
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// An HTTP response read whole.
struct APIReply {
    let status: Int
    let body: String
    let response: HTTPURLResponse

    func json() throws -> Any {
        try JSONSerialization.jsonObject(with: Data(body.utf8))
    }
}

/// Sends one request to the service's HTTP server.
func send(
    _ method: String, _ url: String, body: String? = nil, contentType: String = "application/json"
) async throws -> APIReply {
    var request = URLRequest(url: try #require(URL(string: url)))
    request.httpMethod = method
    if let body {
        request.httpBody = Data(body.utf8)
        request.setValue(contentType, forHTTPHeaderField: "Content-Type")
    }
    let (data, response) = try await URLSession.shared.data(for: request)
    let http = try #require(response as? HTTPURLResponse)
    return APIReply(status: http.statusCode, body: String(decoding: data, as: UTF8.self), response: http)
}
