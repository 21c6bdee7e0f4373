#if canImport(Glibc)
import Glibc
#endif
import IvshmemPosix
import Logging

/// A socket path the server cannot take.
public struct SocketPathError: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var message: String
    public var description: String { "-S/--socket '\(path)': \(message)" }
}

/// Binding the server socket: refuse a path a live server holds (SRV-SOCK-1), replace a
/// stale socket file with a log line (SRV-SOCK-2), never remove anything that is not a socket.
enum ListeningSocket {
    static func open(path: String, mode: mode_t, backlog: Int32, logger: Logger) throws -> FileDescriptor {
        switch try UnixSocket.probe(path: path) {
        case .absent:
            break
        case .live:
            throw SocketPathError(path: path, message: "a server is already listening on this socket")
        case .notASocket:
            throw SocketPathError(path: path, message: "the path exists and is not a socket; not removing it")
        case .stale:
            logger.notice("replacing stale socket file (nothing listens on it)", metadata: ["socket": "\(path)"])
            try FileSystem.unlinkIfPresent(path)
        }
        do {
            return try UnixSocket.listen(path: path, backlog: backlog, mode: mode, nonBlocking: true)
        } catch let error as SystemCallError where error.errno == .addressInUse {
            throw SocketPathError(path: path, message: "another process bound this path while the server was starting")
        }
    }
}
