import ActionTriggersCore
import Testing

@Suite("JSONParser")
struct JSONParserTests {
    private func parse(_ text: String) throws(JSONSyntaxError) -> JSONValue {
        try JSONParser.parse(Array(text.utf8))
    }

    @Test("values of every type")
    func everyType() throws {
        let value = try parse(#" {"a": [1, -2.5e3, 0, true, false, null], "b": {"c": "d"}, "e": ""} "#)
        #expect(value == .object([
            "a": .array([.number(1), .number(-2500), .number(0), .bool(true), .bool(false), .null]),
            "b": .object(["c": .string("d")]),
            "e": .string(""),
        ]))
    }

    @Test("string escapes and non-ASCII")
    func escapes() throws {
        let value = try parse(#"["a\"b\\c\/d\b\f\n\r\t", "\u00e9\u4e2d\ud83d\ude00", "ü 😀"]"#)
        #expect(value == .array([
            .string("a\"b\\c/d\u{08}\u{0C}\n\r\t"),
            .string("é中😀"),
            .string("ü 😀"),
        ]))
    }

    @Test("errors name line and column", arguments: [
        ("{\"a\": 1,}", 1, 9, "trailing comma before '}'"),
        ("[1, 2,]", 1, 7, "trailing comma before ']'"),
        ("{\"a\": 1, \"a\": 2}", 1, 10, "duplicate member name \"a\""),
        ("{\n  \"a\": 1\n  \"b\": 2\n}", 3, 3, "unexpected '\"', expected ',' or '}' after an object member"),
        ("{'a': 1}", 1, 2, "unexpected ''', expected a member name in double quotes"),
        ("[01]", 1, 3, "unexpected '1', expected ',' or ']' after an array element"),
        ("[1.]", 1, 4, "invalid number: expected a digit after '.'"),
        ("[-]", 1, 3, "invalid number: expected a digit"),
        ("[1e400]", 1, 2, "number 1e400 is out of range"),
        ("[tru]", 1, 2, "unexpected 't', expected a value"),
        ("[\"a\nb\"]", 1, 4, "control character U+A in a string; escape it"),
        ("[\"\\x\"]", 1, 3, "invalid escape sequence in a string"),
        ("[\"\\ud83d\"]", 1, 3, "a high surrogate \\u escape must be followed by a low surrogate"),
        ("[\"abc", 1, 2, "unterminated string"),
        ("", 1, 1, "unexpected end of the document, expected a value"),
        ("{} {}", 1, 4, "unexpected '{' after the end of the document"),
        ("[\"é\", x]", 1, 7, "unexpected 'x', expected a value"),
    ])
    func errors(text: String, line: Int, column: Int, message: String) {
        #expect(throws: JSONSyntaxError(line: line, column: column, message: message)) {
            _ = try parse(text)
        }
    }

    @Test("missing comma between members is found")
    func missingComma() {
        // The shape of a config body whose content_types list is not followed by a comma.
        let body = """
            {
              "config_signals": [
                {"signal": "post_save"}
              ],
              "content_types": [
                {
                  "app_label": "myapp",
                  "model_name": "Sale"
                }
              ]
              "webhooks": []
            }
            """
        #expect(throws: JSONSyntaxError(line: 11, column: 3, message: "unexpected '\"', expected ',' or '}' after an object member")) {
            _ = try parse(body)
        }
    }

    @Test("nesting is limited")
    func nestingLimit() {
        let deep = String(repeating: "[", count: JSONParser.maxDepth + 1) + String(repeating: "]", count: JSONParser.maxDepth + 1)
        #expect(throws: JSONSyntaxError.self) {
            _ = try parse(deep)
        }
        let allowed = String(repeating: "[", count: JSONParser.maxDepth) + String(repeating: "]", count: JSONParser.maxDepth)
        #expect(throws: Never.self) {
            _ = try parse(allowed)
        }
    }

    @Test("invalid UTF-8 is rejected")
    func invalidUTF8() {
        #expect(throws: JSONSyntaxError(line: 1, column: 3, message: "invalid UTF-8 in a string")) {
            _ = try JSONParser.parse([0x5B, 0x22, 0xFF, 0x22, 0x5D])
        }
    }
}
