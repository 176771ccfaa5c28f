import Testing

@testable import AWSClient

/// Signatures checked against AWS's documented example and against botocore 1.x's
/// SigV4Auth for the same inputs.
@Suite("SignatureV4")
struct SignatureV4Tests {
    private let credentials = AWSCredentials(
        accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")

    private func authorization(_ headers: [(String, String)]) -> String? {
        headers.first { $0.0 == "Authorization" }?.1
    }

    @Test("AWS documentation example (IAM ListUsers)")
    func documentationExample() {
        let signer = SignatureV4(credentials: credentials, region: "us-east-1", service: "iam")

        let added = signer.sign(
            method: "GET", path: "/", query: "Action=ListUsers&Version=2010-05-08",
            headers: [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"), ("Host", "iam.amazonaws.com")],
            body: [], amzDate: "20150830T123600Z")

        #expect(authorization(added) == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, "
            + "SignedHeaders=content-type;host;x-amz-date, "
            + "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7")
        #expect(added.first { $0.0 == "X-Amz-Date" }?.1 == "20150830T123600Z")
    }

    @Test("SQS form POST with a session token")
    func formPostWithToken() {
        let signer = SignatureV4(
            credentials: AWSCredentials(
                accessKeyID: credentials.accessKeyID, secretAccessKey: credentials.secretAccessKey,
                sessionToken: "session-token-1"),
            region: "eu-west-1", service: "sqs")
        let body = SignatureV4.formBody([
            ("Action", "SendMessage"), ("MessageBody", "café \"quoted\""),
            ("QueueUrl", "http://127.0.0.1:25800/123456789012/orders"), ("Version", "2012-11-05"),
        ])
        #expect(String(decoding: body, as: UTF8.self)
            == "Action=SendMessage&MessageBody=caf%C3%A9%20%22quoted%22&QueueUrl=http%3A%2F%2F127.0.0.1%3A25800%2F123456789012%2Forders&Version=2012-11-05")

        let added = signer.sign(
            method: "POST", path: "/",
            headers: [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"), ("Host", "127.0.0.1:25800")],
            body: body, amzDate: "20150830T123600Z")

        #expect(added.first { $0.0 == "X-Amz-Security-Token" }?.1 == "session-token-1")
        #expect(authorization(added) == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/eu-west-1/sqs/aws4_request, "
            + "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, "
            + "Signature=fec87a7ca8078c086047a497f32bd9ab77c6c1f7205bfeb03275b12e00a5bf6a")
    }

    @Test("percent-encoding keeps only unreserved characters")
    func percentEncoding() {
        #expect(SignatureV4.percentEncode("aZ09-_.~ /+=&é") == "aZ09-_.~%20%2F%2B%3D%26%C3%A9")
    }
}
