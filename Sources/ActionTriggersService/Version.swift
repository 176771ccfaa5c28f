/// The version of this build, printed by `action-triggers version` and sent in `User-Agent`.
public enum Version {
    public static let current = "0.1.0"
}
