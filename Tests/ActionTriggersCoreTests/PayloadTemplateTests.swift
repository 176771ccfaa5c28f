import Testing

@testable import ActionTriggersCore

@Suite("Payload templates")
struct PayloadTemplateTests {
    private func parse(_ text: String) throws -> JSONValue {
        try JSONParser.parse(Array(text.utf8))
    }

    private func render(_ template: String, instance: String, old: String? = nil) throws -> String {
        try render(try parse(template), instance: instance, old: old)
    }

    private func render(_ template: JSONValue, instance: String, old: String? = nil) throws -> String {
        let compiled = try PayloadTemplate.compile(template)
        var related = RelatedRows()
        related.foreignKeys[1] = [:]
        let scope = TemplateScope(
            table: 1, newRow: try parse(instance).objectValue, oldRow: try old.map { try parse($0).objectValue } ?? nil,
            eventID: 42, signal: .postSave, operation: old == nil ? "INSERT" : "UPDATE", model: "myapp.sale")
        return compiled.render { related.resolve($0, in: scope) }.jsonText
    }

    @Test("single placeholder keeps the value's type")
    func typedPlaceholder() throws {
        let body = try render(
            #"{"qty": "{{ instance.quantity }}", "label": "qty={{ instance.quantity }}", "tags": "{{ instance.tags }}"}"#,
            instance: #"{"quantity": 12345678901234567890, "tags": ["a", "b"]}"#)
        #expect(body == #"{"qty":12345678901234567890,"label":"qty=12345678901234567890","tags":["a","b"]}"#)
    }

    @Test("text is exact, never HTML-escaped")
    func exactText() throws {
        let name = #"O'Brien & Sons <Ltd> \"VIP\"\nC:\\tmp 😀 Ωμέγα 東京"#
        let body = try render(#"{"customer_name": "{{ instance.name }}", "greeting": "Hi {{ instance.name }}!"}"#,
                              instance: #"{"name": ""# + name + #""}"#)
        #expect(body == #"{"customer_name":""# + name + #"","greeting":"Hi "# + name + #"!"}"#)
    }

    @Test("members keep the order written")
    func memberOrder() throws {
        let body = try render(#"{"z": 1, "a": {"y": "{{ event.signal }}", "b": true}, "m": [null, 2.50]}"#, instance: "{}")
        #expect(body == #"{"z":1,"a":{"y":"post_save","b":true},"m":[null,2.50]}"#)
    }

    @Test("event fields")
    func eventFields() throws {
        let body = try render(
            #"{"s": "{{ event.signal }}", "m": "{{ event.model }}", "i": "{{ event.id }}", "c": "{{ event.created }}"}"#,
            instance: "{}")
        #expect(body == #"{"s":"post_save","m":"myapp.sale","i":42,"c":true}"#)
    }

    @Test("old row and missing values are null")
    func oldAndMissing() throws {
        let body = try render(#"{"before": "{{ old.name }}", "gone": "{{ instance.nothing }}", "text": "[{{ old.nothing }}]"}"#,
                              instance: #"{"name": "new"}"#, old: #"{"name": "old"}"#)
        #expect(body == #"{"before":"old","gone":null,"text":"[]"}"#)
    }

    @Test("filters", arguments: [
        (#"{{ instance.name|upper }}"#, #""O'BRIEN""#),
        (#"{{ instance.name|lower }}"#, #""o'brien""#),
        (#"{{ instance.phrase|title }}"#, #""They're 1st O'Brien""#),
        (#"{{ instance.name|length }}"#, "7"),
        (#"{{ instance.tags|length }}"#, "2"),
        (#"{{ instance.missing|length }}"#, "0"),
        (#"{{ instance.phrase|truncatechars:8 }}"#, #""they're…""#),
        (#"{{ instance.name|truncatechars:"7" }}"#, #""O'Brien""#),
        (#"{{ instance.missing|default:"none" }}"#, #""none""#),
        (#"{{ instance.zero|default:"none" }}"#, #""none""#),
        (#"{{ instance.zero|default_if_none:"none" }}"#, "0"),
        (#"{{ instance.missing|default_if_none:'x'|upper }}"#, #""X""#),
        (#"{{ instance.missing|upper }}"#, "null"),
        (#"{{ instance.zero|upper }}"#, #""0""#),
    ])
    func filters(template: String, expected: String) throws {
        let body = try render(.object(["v": .string(template)]),
                              instance: #"{"name": "O'Brien", "phrase": "they're 1ST o'brien", "tags": [1, 2], "zero": 0}"#)
        #expect(body == #"{"v":"# + expected + "}")
    }

    @Test("date filter", arguments: [
        ("2026-03-07T09:05:04.25+00:00", "Y-m-d H:i:s", "2026-03-07 09:05:04"),
        ("2026-03-07T09:05:04.25+00:00", "c", "2026-03-07T09:05:04.250000+00:00"),
        ("2026-03-07T21:05:04", "D, j M y g:i A", "Sat, 7 Mar 26 9:05 PM"),
        ("2026-03-07T21:05:04", "c", "2026-03-07T21:05:04"),
        ("2026-03-07", "l jS F Y", "Saturday 7th March 2026"),
        ("2026-03-07", #"\Y\e\a\r: Y"#, "Year: 2026"),
        ("1970-01-02T00:00:00+00:00", "U", "86400"),
        ("2024-12-31", "z t L w", "366 31 True 2"),
        ("09:30:00", "H:i", "09:30"),
        ("2026-03-07T13:05:04", "N f P E", "March 1:05 1:05 p.m. March"),
        ("2026-09-07T00:00:00", "N P e", "Sept. midnight "),
        ("2026-03-07T12:00:00+00:00", "P e T I Z", "noon UTC UTC 0 0"),
        ("2026-03-07T12:00:00+05:30", "e Z O", "UTC+05:30 19800 +0530"),
        ("2026-03-07T09:05:04+00:00", "r", "Sat, 07 Mar 2026 09:05:04 +0000"),
        ("2021-01-03", "o-W", "2020-53"),
        ("2024-12-30", "o-W", "2025-1"),
        ("2026-06-15", "o-W", "2026-25"),
        ("infinity", "Y", ""),
        ("2026-02-30", "Y", ""),
    ])
    func dateFilter(value: String, format: String, expected: String) throws {
        let moment = TemplateDateTime(parsing: value)
        #expect((moment?.formatted(format) ?? "") == expected)
    }

    @Test("invalid placeholders are rejected", arguments: [
        ("{{ instance.name|shout }}", "unknown filter shout; known filters: default, default_if_none, upper, lower, title, length, truncatechars, date"),
        ("{{ instance.name", #""{{ instance.name" has {{ without a closing }}"#),
        ("{{ myapp.utils.get_token }}", "path myapp.utils.get_token must start with instance, old or event"),
        ("{{ event.table }}", "path event.table is not an event field; event fields: event.signal, event.model, event.id, event.created"),
        ("{{ instance }}", "path instance needs a column, for example instance.id"),
        ("{{ instance.name|default }}", #"filter default needs a quoted string argument, for example default:"x""#),
        ("{{ instance.name|upper:1 }}", "filter upper takes no argument"),
        ("{{ instance.name|truncatechars:0 }}", "filter truncatechars needs a positive integer argument, for example truncatechars:20"),
        ("{{ instance.name|default:\"x }}", "filter argument has no closing \""),
        ("{{ instance..name }}", "expected a name after '.', found '.'"),
        ("{{ instance.name x }}", "unexpected 'x' in {{ instance.name x }}"),
        ("{% if instance.name %}y{% endif %}",
         #""{% if instance.name %}y{% endif %}" has a Django template tag ({% ... %}), which payloads do not support: use {{ path|filter }} placeholders"#),
    ])
    func invalidPlaceholders(template: String, message: String) throws {
        let value = JSONValue.object(["items": .array([.string(template)])])
        #expect(throws: TemplateError(path: "payload.items[0]", message: message)) {
            try PayloadTemplate.compile(value)
        }
    }

    @Test("relations are looked up in rounds")
    func relationRounds() throws {
        let template = try PayloadTemplate.compile(try parse(
            #"{"customer": "{{ instance.customer.name }}", "country": "{{ instance.customer.country.code }}", "none": "{{ instance.product.name }}", "row": "{{ instance.customer.country }}"}"#))
        let scope = TemplateScope(
            table: 1, newRow: try parse(#"{"customer_id": 7, "product_id": null}"#).objectValue, oldRow: nil,
            eventID: 1, signal: .postSave, operation: "INSERT", model: "myapp.sale")
        var related = RelatedRows()
        var rounds = 0
        repeat {
            related.startRound()
            for expression in template.expressions {
                _ = related.resolve(expression, in: scope)
            }
            rounds += 1
            for table in related.missingTables {
                related.foreignKeys[table] = table == 1
                    ? ["customer": ForeignKey(column: "customer_id", referencedTable: 2, referencedColumn: "id"),
                       "product": ForeignKey(column: "product_id", referencedTable: 3, referencedColumn: "id")]
                    : ["country": ForeignKey(column: "country_code", referencedTable: 4, referencedColumn: "code")]
            }
            for key in related.missingRows {
                related.rows[key] = key.table == 2
                    ? try parse(#"{"id": 7, "name": "Ada", "country_code": "GB"}"#).objectValue
                    : try parse(#"{"code": "GB"}"#).objectValue
            }
        } while !related.isComplete

        #expect(rounds == 5)
        let body = template.render { related.resolve($0, in: scope) }.jsonText
        #expect(body == #"{"customer":"Ada","country":"GB","none":null,"row":{"code":"GB"}}"#)
    }
}
