import Digest
import Foundation

/// AWS credentials; `sessionToken` is set for temporary credentials.
public struct AWSCredentials: Sendable, Equatable {
    public let accessKeyID: String
    public let secretAccessKey: String
    public let sessionToken: String?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }
}

/// Signs requests with AWS Signature Version 4, HMAC-SHA256 from OpenSSL's libcrypto.
///
/// The algorithm is AWS's "Create a signed AWS API request": a canonical request,
/// a string to sign over its SHA-256, and a signing key derived from the secret,
/// the date, the region and the service.
public struct SignatureV4: Sendable {
    public let credentials: AWSCredentials
    public let region: String
    public let service: String

    public init(credentials: AWSCredentials, region: String, service: String) {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    /// Returns the headers to add to a request: `X-Amz-Date`, `X-Amz-Security-Token`
    /// for temporary credentials, and `Authorization`.
    ///
    /// `headers` are the ones the request sends and must include `Host`; `query` is the
    /// raw query string without `?`; `amzDate` is the time as `yyyyMMdd'T'HHmmss'Z'`.
    public func sign(
        method: String, path: String, query: String = "", headers: [(String, String)], body: [UInt8], amzDate: String
    ) -> [(String, String)] {
        var added = [("X-Amz-Date", amzDate)]
        if let token = credentials.sessionToken {
            added.append(("X-Amz-Security-Token", token))
        }

        var canonical: [String: String] = [:]
        for (name, value) in headers + added {
            let trimmed = value.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
            canonical[name.lowercased()] = trimmed
        }
        let names = canonical.keys.sorted()
        let signedHeaders = names.joined(separator: ";")
        let canonicalRequest = [
            method,
            path.isEmpty ? "/" : Self.encodePath(path),
            Self.canonicalQuery(query),
            names.map { "\($0):\(canonical[$0] ?? "")\n" }.joined(),
            signedHeaders,
            Self.hex(Self.sha256(body)),
        ].joined(separator: "\n")

        let date = String(amzDate.prefix(8))
        let scope = "\(date)/\(region)/\(service)/aws4_request"
        let stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope, Self.hex(Self.sha256(Array(canonicalRequest.utf8)))]
            .joined(separator: "\n")

        var key = Self.hmac(key: Array("AWS4\(credentials.secretAccessKey)".utf8), data: Array(date.utf8))
        for part in [region, service, "aws4_request"] {
            key = Self.hmac(key: key, data: Array(part.utf8))
        }
        let signature = Self.hex(Self.hmac(key: key, data: Array(stringToSign.utf8)))
        added.append((
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"
        ))
        return added
    }

    /// Percent-encodes as AWS requires: every byte but `A-Z a-z 0-9 - _ . ~`, in upper-case hex.
    public static func percentEncode(_ text: String) -> String {
        var output = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."),
                 UInt8(ascii: "~"):
                output.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                output += "%" + String(byte >> 4, radix: 16, uppercase: true) + String(byte & 0xF, radix: 16, uppercase: true)
            }
        }
        return output
    }

    /// Encodes a form body of parameters, in the order given.
    public static func formBody(_ parameters: [(String, String)]) -> [UInt8] {
        Array(parameters.map { "\(percentEncode($0.0))=\(percentEncode($0.1))" }.joined(separator: "&").utf8)
    }

    private static func encodePath(_ path: String) -> String {
        path.split(separator: "/", omittingEmptySubsequences: false)
            .map { percentEncode(String($0)) }
            .joined(separator: "/")
    }

    private static func canonicalQuery(_ query: String) -> String {
        var pairs: [(name: String, value: String)] = []
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            let name = parts[0].removingPercentEncoding ?? parts[0]
            var value = ""
            if parts.count > 1 {
                value = parts[1].removingPercentEncoding ?? parts[1]
            }
            pairs.append((percentEncode(name), percentEncode(value)))
        }
        pairs.sort { left, right in
            left.name == right.name ? left.value < right.value : left.name < right.name
        }
        return pairs.map { pair in pair.name + "=" + pair.value }.joined(separator: "&")
    }

    static func sha256(_ data: [UInt8]) -> [UInt8] {
        Digest.sha256(data)
    }

    static func hmac(key: [UInt8], data: [UInt8]) -> [UInt8] {
        Digest.hmacSHA256(key: key, data: data)
    }

    static func hex(_ bytes: [UInt8]) -> String {
        Digest.hex(bytes)
    }
}
