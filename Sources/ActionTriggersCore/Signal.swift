/// A Django model signal that a config reacts to, captured by a PostgreSQL row trigger.
public enum Signal: String, Sendable, CaseIterable, Codable {
    /// BEFORE INSERT OR UPDATE; sends NEW.
    case preSave = "pre_save"
    /// AFTER INSERT OR UPDATE; sends NEW as stored.
    case postSave = "post_save"
    /// BEFORE DELETE; sends OLD.
    case preDelete = "pre_delete"
    /// AFTER DELETE; sends OLD.
    case postDelete = "post_delete"
}
