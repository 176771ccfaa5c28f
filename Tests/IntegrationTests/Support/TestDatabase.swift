import Foundation
import PostgresClient

/// A database of its own for one test, with the tables a Django app `myapp` creates.
final class TestDatabase {
    let name: String
    let url: String
    private let adminURL: String

    /// The tables of `Customer(name, email)`, `Product(name, description)` and
    /// `Sale(customer → Customer, product → Product, quantity)`, as Django names them,
    /// plus `Measurement` with exact numeric types.
    static let djangoSchema = """
        CREATE TABLE myapp_customer (
            id bigserial PRIMARY KEY,
            name text NOT NULL,
            email varchar(254) NOT NULL
        );
        CREATE TABLE myapp_product (
            id bigserial PRIMARY KEY,
            name varchar(255) NOT NULL,
            description text NOT NULL
        );
        CREATE TABLE myapp_sale (
            id bigserial PRIMARY KEY,
            customer_id bigint REFERENCES myapp_customer (id) DEFERRABLE INITIALLY DEFERRED,
            product_id bigint NOT NULL REFERENCES myapp_product (id) DEFERRABLE INITIALLY DEFERRED,
            quantity integer NOT NULL
        );
        CREATE TABLE myapp_measurement (
            id bigserial PRIMARY KEY,
            big bigint NOT NULL,
            amount numeric NOT NULL
        );
        """

    /// Creates the database and runs `schema` in it, by default `djangoSchema`.
    init(schema: String = TestDatabase.djangoSchema) throws {
        adminURL = try TestEnvironment.adminDatabaseURL()
        name = "at_test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
        let admin = try PostgresConnection(conninfo: adminURL, applicationName: "integration-tests")
        try admin.execute("CREATE DATABASE \(name)")
        admin.close()

        url = Self.replacingDatabase(in: adminURL, with: name)
        let connection = try PostgresConnection(conninfo: url, applicationName: "integration-tests")
        try connection.execute(schema)
        connection.close()
    }

    /// Opens a new connection to this database.
    func connect() throws -> PostgresConnection {
        try PostgresConnection(conninfo: url, applicationName: "integration-tests")
    }

    /// Runs one statement on a fresh connection and returns its rows.
    @discardableResult
    func query(_ sql: String, _ parameters: [String?] = []) throws -> PostgresResult {
        let connection = try connect()
        defer { connection.close() }
        return try connection.query(sql, parameters)
    }

    /// Runs a script of several statements on a fresh connection.
    func execute(_ script: String) throws {
        let connection = try connect()
        defer { connection.close() }
        try connection.execute(script)
    }

    /// Runs a statement on the server's admin database, for changes a database cannot make to itself.
    func executeAsAdmin(_ sql: String) throws {
        let admin = try PostgresConnection(conninfo: adminURL, applicationName: "integration-tests")
        defer { admin.close() }
        try admin.execute(sql)
    }

    /// Drops the database, ending any connection still open to it.
    func drop() {
        guard let admin = try? PostgresConnection(conninfo: adminURL, applicationName: "integration-tests") else { return }
        _ = try? admin.execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
        admin.close()
    }

    /// Returns a `postgresql://` URL with its database path replaced.
    private static func replacingDatabase(in url: String, with database: String) -> String {
        guard var components = URLComponents(string: url) else { return url }
        components.path = "/" + database
        return components.string ?? url
    }
}
