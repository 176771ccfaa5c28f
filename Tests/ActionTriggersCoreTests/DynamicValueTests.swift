import Testing

@testable import ActionTriggersCore

@Suite("DynamicValue")
struct DynamicValueTests {
    @Test("placeholders are replaced, other braces kept")
    func substitute() {
        let values = ["myapp.utils.get_token": "t0k", "a": "A"]
        let text = DynamicValue.substitute(in: "Bearer {{ myapp.utils.get_token }} {{a}}{{ not valid }} {{ a") {
            values[$0] ?? "?"
        }
        #expect(text == "Bearer t0k A{{ not valid }} {{ a")
    }

    @Test("names are listed in order")
    func names() {
        #expect(DynamicValue.names(in: "{{ b.c }}-{{a}}-{{ x y }}") == ["b.c", "a"])
    }

    @Test("name rules", arguments: [
        ("myapp.utils.get_token", true), ("_private", true), ("a1.b2", true),
        ("1a", false), ("a..b", false), ("a.", false), ("", false), ("a b", false), ("ä", false),
    ])
    func nameRules(name: String, valid: Bool) {
        #expect(DynamicValue.isValidName(name) == valid)
    }
}
