/// A Google Cloud Pub/Sub topic, with the project and credentials to reach it.
public struct PubSubTarget: Sendable, Equatable {
    /// `topic`: a topic name, or a full path `projects/<project>/topics/<topic>`.
    public var topic: String
    /// `project`; nil to use the key file's `project_id` or `GOOGLE_CLOUD_PROJECT`.
    public var project: String?
    /// `credentials_file`: a service account key file; nil to use `GOOGLE_APPLICATION_CREDENTIALS`.
    public var credentialsFile: String?
    /// `endpoint_url`; nil for `https://pubsub.googleapis.com`. `PUBSUB_EMULATOR_HOST` wins over both.
    public var endpointURL: String?
    /// Parameters other than topic: message attributes.
    public var attributes: [(key: String, value: String)] = []

    /// The largest message Pub/Sub accepts in one publish request, in bytes.
    public static let maxMessageBytes = 10_000_000

    public static func == (lhs: PubSubTarget, rhs: PubSubTarget) -> Bool {
        lhs.topic == rhs.topic && lhs.project == rhs.project && lhs.credentialsFile == rhs.credentialsFile
            && lhs.endpointURL == rhs.endpointURL && lhs.attributes.map(\.key) == rhs.attributes.map(\.key)
            && lhs.attributes.map(\.value) == rhs.attributes.map(\.value)
    }

    /// Builds a target from settings that `problem` accepted.
    init(connDetails: JSONObject, params: JSONObject) {
        topic = params["topic"]?.text ?? ""
        project = connDetails["project"]?.text
        credentialsFile = connDetails["credentials_file"]?.text
        endpointURL = connDetails["endpoint_url"]?.text
        for member in params.members where member.key != "topic" {
            attributes.append((member.key, member.value.text ?? ""))
        }
    }

    /// Returns the topic's resource path, `projects/<project>/topics/<topic>`, or nil without a project.
    public func topicPath(defaultProject: String?) -> String? {
        if topic.hasPrefix("projects/") {
            return topic
        }
        guard let project = project ?? defaultProject else {
            return nil
        }
        return "projects/\(project)/topics/\(topic)"
    }

    static func problem(connDetails: JSONObject, params: JSONObject, merged: Bool) -> BrokerTarget.Problem? {
        let known = BrokerType.gcpPubSub.connectionKeys ?? []
        for member in connDetails.members {
            let path = "conn_details.\(member.key)"
            guard known.contains(member.key) else {
                return .init(path: path, message: "is not a Pub/Sub connection setting; known: \(known.joined(separator: ", "))")
            }
            guard case .string(let text) = member.value, !text.isEmpty else {
                return .init(path: path, message: "must be a non-empty string")
            }
        }
        for member in params.members {
            guard member.value.isScalarText, member.value.text?.isEmpty == false else {
                return .init(path: "params.\(member.key)", message: "must be a non-empty string or a number")
            }
        }
        if case .string(let topic)? = params["topic"], topic.hasPrefix("projects/"), !topic.contains("{{") {
            let parts = topic.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 4, parts[2] == "topics", !parts[1].isEmpty, !parts[3].isEmpty else {
                return .init(path: "params.topic", message: "must be a topic name, or a full path projects/<project>/topics/<topic>")
            }
        }
        if merged && params["topic"] == nil {
            return .init(path: "params.topic", message: "a gcp_pubsub broker needs a topic")
        }
        return nil
    }
}
