import AWSClient
import Testing
import Foundation

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A small SQS and SNS client for test set-up and checks against moto. moto routes
/// a request to a service by its signature's credential scope, so requests are signed.
struct MotoClient {
    let endpoint: String
    static let region = "us-east-1"
    static let credentials = AWSCredentials(accessKeyID: "testing", secretAccessKey: "testing")

    /// Sends a query API action and returns the XML response, or throws for a non-2xx status.
    @discardableResult
    func call(_ service: String, _ parameters: [(String, String)]) async throws -> String {
        let url = try #require(URL(string: endpoint))
        let body = SignatureV4.formBody(parameters)
        let host = "\(url.host ?? "127.0.0.1"):\(url.port ?? 80)"
        var headers = [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"), ("Host", host)]
        let signer = SignatureV4(credentials: Self.credentials, region: Self.region, service: service)
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        headers += signer.sign(method: "POST", path: "/", headers: headers, body: body, amzDate: formatter.string(from: Date()))

        var request = URLRequest(url: url)
        request.httpMethod = "POST"
        request.httpBody = Data(body)
        for (name, value) in headers where name != "Host" {
            request.setValue(value, forHTTPHeaderField: name)
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        let text = String(decoding: data, as: UTF8.self)
        guard let status = (response as? HTTPURLResponse)?.statusCode, (200...299).contains(status) else {
            throw MotoError(description: "\(service) \(parameters.first?.1 ?? "") failed: \(text)")
        }
        return text
    }

    /// Creates a queue and returns its URL.
    func createQueue(_ name: String, fifo: Bool = false) async throws -> String {
        var parameters = [("Action", "CreateQueue"), ("Version", "2012-11-05"), ("QueueName", name)]
        if fifo {
            parameters += [("Attribute.1.Name", "FifoQueue"), ("Attribute.1.Value", "true")]
        }
        let answer = try await call("sqs", parameters)
        return try #require(Self.elements("QueueUrl", in: answer).first)
    }

    /// Receives up to 10 messages with all their attributes and deletes them, so a
    /// FIFO queue hands out the next message of the same group.
    func receive(queueURL: String) async throws -> [(body: String, attributes: [String: String], groupID: String?)] {
        let answer = try await call("sqs", [
            ("Action", "ReceiveMessage"), ("Version", "2012-11-05"), ("QueueUrl", queueURL),
            ("MaxNumberOfMessages", "10"), ("MessageAttributeName.1", "All"), ("AttributeName.1", "All"),
        ])
        for handle in Self.elements("ReceiptHandle", in: answer) {
            try await call("sqs", [
                ("Action", "DeleteMessage"), ("Version", "2012-11-05"), ("QueueUrl", queueURL), ("ReceiptHandle", handle),
            ])
        }
        return answer.components(separatedBy: "<Message>").dropFirst().map { message in
            let body = Self.elements("Body", in: message).first ?? ""
            var attributes: [String: String] = [:]
            for attribute in message.components(separatedBy: "<MessageAttribute>").dropFirst() {
                if let name = Self.elements("Name", in: attribute).first {
                    attributes[name] = Self.elements("StringValue", in: attribute).first
                }
            }
            let groupID = message.components(separatedBy: "<Attribute>").dropFirst()
                .first { Self.elements("Name", in: $0).first == "MessageGroupId" }
                .flatMap { Self.elements("Value", in: $0).first }
            return (body, attributes, groupID)
        }
    }

    /// Returns the texts of the elements with a name, XML entities decoded.
    static func elements(_ name: String, in xml: String) -> [String] {
        xml.components(separatedBy: "<\(name)>").dropFirst().compactMap { part in
            part.components(separatedBy: "</\(name)>").first.map { text in
                text.replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&apos;", with: "'")
                    .replacingOccurrences(of: "&#39;", with: "'").replacingOccurrences(of: "&lt;", with: "<")
                    .replacingOccurrences(of: "&gt;", with: ">").replacingOccurrences(of: "&amp;", with: "&")
            }
        }
    }
}

struct MotoError: Error, CustomStringConvertible {
    let description: String
}
