import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A loopback TCP proxy in front of a test server, which a test takes down and brings
/// back on the same port to play a broker outage without stopping the shared server.
final class TCPProxy: Sendable {
    let port: Int
    private let targetPort: Int
    /// The listening socket while up, and every open socket, so `down()` can close them.
    private let sockets = Mutex<(listener: Int32?, open: Set<Int32>)>((nil, []))

    /// The ports a proxy listens on: below Linux's ephemeral range (32768 and up), and
    /// above the test servers' ports. The proxy listens on its port again after
    /// `down()`, and meanwhile a port of the ephemeral range may become the local port
    /// of some client socket, which made that second listen fail with EADDRINUSE.
    private static let ports = 27_000..<32_000

    init(targetPort: Int) throws {
        self.targetPort = targetPort
        let (listener, port) = try Self.listenOnFreePort()
        self.port = port
        accept(on: listener)
    }

    /// Listens on a free port of `ports`, trying up to 100 from a random one.
    private static func listenOnFreePort() throws -> (listener: Int32, port: Int) {
        let start = Int.random(in: ports)
        var lastError: Error?
        for offset in 0..<100 {
            let port = ports.lowerBound + (start - ports.lowerBound + offset) % ports.count
            do {
                return (try listen(port: port), port)
            } catch {
                lastError = error
            }
        }
        throw lastError ?? TCPProxyError(description: "no free port in \(ports)")
    }

    deinit {
        down()
    }

    /// Closes the listening socket and every connection: clients see the server go away.
    func down() {
        let (listener, open) = sockets.withLock { state in
            let taken = state
            state = (nil, [])
            return taken
        }
        if let listener {
            shutdown(listener, Int32(SHUT_RDWR))
            close(listener)
        }
        for socket in open {
            shutdown(socket, Int32(SHUT_RDWR))
        }
    }

    /// Listens again on the same port.
    func up() throws {
        accept(on: try Self.listen(port: port))
    }

    private func accept(on listener: Int32) {
        sockets.withLock { $0.listener = listener }
        let thread = Thread { [self] in
            while true {
                let client = Glibc.accept(listener, nil, nil)
                guard client >= 0 else {
                    return
                }
                guard let server = try? Self.connect(port: targetPort) else {
                    close(client)
                    continue
                }
                sockets.withLock { state in
                    state.open.insert(client)
                    state.open.insert(server)
                }
                Thread { [self] in
                    Self.pump(client, server)
                    sockets.withLock { state in
                        state.open.remove(client)
                        state.open.remove(server)
                    }
                    close(client)
                    close(server)
                }.start()
            }
        }
        thread.start()
    }

    /// Copies bytes both ways until either side closes.
    private static func pump(_ first: Int32, _ second: Int32) {
        var descriptors = [pollfd(fd: first, events: Int16(POLLIN), revents: 0), pollfd(fd: second, events: Int16(POLLIN), revents: 0)]
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while poll(&descriptors, 2, 1000) >= 0 {
            for index in 0..<2 where descriptors[index].revents != 0 {
                let count = read(descriptors[index].fd, &buffer, buffer.count)
                guard count > 0 else {
                    return
                }
                var written = 0
                while written < count {
                    let result = buffer[written..<count].withUnsafeBytes {
                        write(descriptors[1 - index].fd, $0.baseAddress, count - written)
                    }
                    guard result > 0 else {
                        return
                    }
                    written += result
                }
            }
        }
    }

    private static func listen(port: Int) throws -> Int32 {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var reuse: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size))
        var address = loopback(port: port)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, Glibc.listen(listener, 64) == 0 else {
            close(listener)
            throw TCPProxyError(description: "listening on 127.0.0.1:\(port) failed: errno \(errno)")
        }
        return listener
    }

    private static func connect(port: Int) throws -> Int32 {
        let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = loopback(port: port)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(server, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            close(server)
            throw TCPProxyError(description: "connecting to 127.0.0.1:\(port) failed: errno \(errno)")
        }
        return server
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }
}

struct TCPProxyError: Error, CustomStringConvertible {
    let description: String
}
