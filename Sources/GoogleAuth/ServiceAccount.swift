import CCrypto
import Foundation

/// The fields of a Google Cloud service account key file that token requests need.
public struct ServiceAccountKey: Sendable, Decodable {
    public let clientEmail: String
    public let privateKey: String
    public let tokenURI: String
    public let projectID: String?

    enum CodingKeys: String, CodingKey {
        case clientEmail = "client_email"
        case privateKey = "private_key"
        case tokenURI = "token_uri"
        case projectID = "project_id"
    }

    /// Parses a key file's JSON.
    public static func parse(_ data: Data) throws -> ServiceAccountKey {
        try JSONDecoder().decode(ServiceAccountKey.self, from: data)
    }

    /// Returns the signed JWT that a token request sends as its assertion (RFC 7523):
    /// issued by the service account, for `scope`, valid for one hour from `issuedAt`.
    public func assertion(scope: String, issuedAt: Int64) throws(GoogleAuthError) -> String {
        let header = #"{"alg":"RS256","typ":"JWT"}"#
        let claims = """
            {"iss":\(Self.jsonString(clientEmail)),"scope":\(Self.jsonString(scope)),"aud":\(Self.jsonString(tokenURI)),\
            "iat":\(issuedAt),"exp":\(issuedAt + 3600)}
            """
        let signingInput = Self.base64URL(Array(header.utf8)) + "." + Self.base64URL(Array(claims.utf8))
        let signature = try Self.signRS256(Array(signingInput.utf8), privateKeyPEM: privateKey)
        return signingInput + "." + Self.base64URL(signature)
    }

    /// Signs with RSASSA-PKCS1-v1_5 and SHA-256 (JWT's RS256) using libcrypto.
    static func signRS256(_ data: [UInt8], privateKeyPEM: String) throws(GoogleAuthError) -> [UInt8] {
        let pem = Array(privateKeyPEM.utf8)
        guard let bio = pem.withUnsafeBufferPointer({ BIO_new_mem_buf($0.baseAddress, Int32($0.count)) }) else {
            throw GoogleAuthError(message: "out of memory reading the private key")
        }
        defer { BIO_free(bio) }
        guard let key = PEM_read_bio_PrivateKey(bio, nil, nil, nil) else {
            throw GoogleAuthError(message: "the private_key of the service account key is not a PEM private key")
        }
        defer { EVP_PKEY_free(key) }
        guard let context = EVP_MD_CTX_new() else {
            throw GoogleAuthError(message: "out of memory signing the token request")
        }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestSignInit(context, nil, EVP_sha256(), nil, key) == 1 else {
            throw GoogleAuthError(message: "the private key cannot sign with RS256")
        }
        var length = 0
        guard data.withUnsafeBufferPointer({ EVP_DigestSign(context, nil, &length, $0.baseAddress, $0.count) }) == 1 else {
            throw GoogleAuthError(message: "signing the token request failed")
        }
        var signature = [UInt8](repeating: 0, count: length)
        let signed = data.withUnsafeBufferPointer { input in
            signature.withUnsafeMutableBufferPointer { output in
                EVP_DigestSign(context, output.baseAddress, &length, input.baseAddress, input.count)
            }
        }
        guard signed == 1 else {
            throw GoogleAuthError(message: "signing the token request failed")
        }
        return Array(signature.prefix(length))
    }

    /// Base64 with the URL alphabet and no padding, as JWTs write it.
    public static func base64URL(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    private static func jsonString(_ text: String) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: [text])) ?? Data("[\"\"]".utf8)
        return String(decoding: data.dropFirst().dropLast(), as: UTF8.self)
    }
}

public struct GoogleAuthError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}
