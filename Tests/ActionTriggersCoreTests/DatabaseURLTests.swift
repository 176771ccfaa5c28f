import ActionTriggersCore
import Testing

@Suite("DatabaseURL.problem")
struct DatabaseURLTests {
    @Test("URIs and conninfo pass", arguments: [
        "postgresql://postgres@127.0.0.1:5432/app",
        "postgres://user:secret@db/app?sslmode=require",
        "host=127.0.0.1 port=5432 dbname=app",
        "dbname=app",
    ])
    func valid(value: String) {
        #expect(DatabaseURL.problem(value) == nil)
    }

    @Test("other schemes are named")
    func otherScheme() {
        #expect(DatabaseURL.problem("mysql://root:secret@127.0.0.1/db")?.hasPrefix("the database URL has the scheme \"mysql\"") == true)
    }

    @Test("bare words are rejected without echoing them")
    func bareWord() throws {
        let problem = try #require(DatabaseURL.problem("garbage-secret"))
        #expect(problem.contains("neither a postgresql:// URI nor a key=value conninfo string"))
        #expect(!problem.contains("garbage-secret"))
    }
}
