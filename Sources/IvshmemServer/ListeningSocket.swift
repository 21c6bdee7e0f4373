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
///
/// A running ivshmem2 server holds an flock on `<socket>.lock` (opened without following a
/// symbolic link, SRV-SOCK-3), so a second one can tell it is there without connecting (a
/// connection would be a real peer: every attached device would see it join and leave). Only
/// when no ivshmem2 server holds the lock is the socket probed by connecting, which finds
/// other servers (e.g. the reference one). The socket is created with its final mode
/// (SRV-SOCK-4): no `chmod` through a path someone could swap.
enum ListeningSocket {
    struct Bound {
        var listener: FileDescriptor
        var lock: FileDescriptor
        var lockPath: String
    }

    static func open(path: String, mode: mode_t, backlog: Int32, logger: Logger) throws -> Bound {
        let lockPath = path + ".lock"
        let taken: FileDescriptor?
        do {
            taken = try FileLock.tryExclusive(path: lockPath)
        } catch let error as SystemCallError where error.errno == .tooManySymbolicLinks {
            // SRV-SOCK-3: never follow a link planted where the lock file goes.
            throw SocketPathError(path: path, message: "the lock file \(lockPath) is a symbolic link; refusing to follow it (remove it if it is yours)")
        } catch let error as FileLock.NotARegularFile {
            throw SocketPathError(path: path, message: "\(error)")
        }
        guard let lock = taken else {
            throw SocketPathError(path: path, message: "a server is already listening on this socket (it holds \(lockPath))")
        }
        do {
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
                let listener = try UnixSocket.listen(path: path, backlog: backlog, mode: mode, nonBlocking: true)
                return Bound(listener: listener, lock: lock, lockPath: lockPath)
            } catch let error as SystemCallError where error.errno == .addressInUse {
                throw SocketPathError(path: path, message: "another process bound this path while the server was starting")
            }
        } catch {
            lock.closeQuietly()
            throw error
        }
    }
}
