#if canImport(Glibc)
import Glibc
#endif
import CIvshmemShim
import IvshmemSync

/// A UNIX socket path that does not fit `sun_path`.
public struct UnixSocketPathError: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var byteCount: Int
    public var description: String {
        "socket path '\(path)' is \(byteCount) bytes long; a UNIX socket path holds at most \(UnixSocket.maxPathLength) bytes (sun_path)"
    }
}

/// Stream UNIX sockets: listen, connect, accept, socketpair. Descriptors are close-on-exec.
/// Passing descriptors (SCM_RIGHTS) is in `FileDescriptorPassing.swift`.
public enum UnixSocket {
    /// The longest path `sun_path` holds, without its terminating NUL.
    public static var maxPathLength: Int { MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1 }

    /// What is at a socket path.
    public enum PathState: Equatable, Sendable {
        /// Nothing: the path is free.
        case absent
        /// A socket that a process listens on.
        case live
        /// A socket file nobody listens on (left by a process that died).
        case stale
        /// Something that is not a socket: never to be removed by a server.
        case notASocket
    }

    /// A stream socket bound to `path` and listening, created with permissions `mode`.
    ///
    /// The mode is set by the umask during `bind` (which creates the file as 0777 & ~umask),
    /// not by a `chmod` of the path afterwards: between `bind` and a `chmod` another user could
    /// replace the socket file by a symbolic link (in a shared directory like /tmp), and the
    /// `chmod` would change the link's target. The umask is process-wide, so it is changed
    /// under a lock (one bind at a time in this process) and restored at once; a file another
    /// thread of an embedding process creates in those microseconds gets this umask instead
    /// of its own.
    public static func listen(path: String, backlog: Int32 = 128, mode: mode_t = 0o600, nonBlocking: Bool = true) throws -> FileDescriptor {
        var address = try makeAddress(path)
        let fd = try makeSocket(nonBlocking: nonBlocking)
        do {
            try umaskLock.withLock { _ in
                let previous = umask(~mode & 0o777)
                defer { umask(previous) }
                _ = try retryingSystemCall("bind", detail: path) {
                    withUnsafePointer(to: &address) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            bind(fd.rawValue, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                        }
                    }
                }
            }
            _ = try retryingSystemCall("listen", detail: path) { Glibc.listen(fd.rawValue, backlog) }
        } catch {
            fd.closeQuietly()
            throw error
        }
        return fd
    }

    /// Serialises this process's temporary umask changes (``listen(path:backlog:mode:nonBlocking:)``).
    private static let umaskLock = Locked(())

    /// A stream socket connected to `path` (blocking unless `nonBlocking`).
    public static func connect(path: String, nonBlocking: Bool = false) throws -> FileDescriptor {
        var address = try makeAddress(path)
        let fd = try makeSocket(nonBlocking: nonBlocking)
        do {
            _ = try retryingSystemCall("connect", detail: path) {
                withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        Glibc.connect(fd.rawValue, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                    }
                }
            }
        } catch {
            fd.closeQuietly()
            throw error
        }
        return fd
    }

    /// `accept4(2)`: the next pending connection, or nil when none is pending (EAGAIN on a
    /// non-blocking listener). A connection reset before it was accepted also gives nil.
    public static func accept(_ listener: FileDescriptor, nonBlocking: Bool = true) throws -> FileDescriptor? {
        var flags = Int32(SOCK_CLOEXEC.rawValue)
        if nonBlocking { flags |= Int32(SOCK_NONBLOCK.rawValue) }
        do {
            let raw = try retryingSystemCall("accept4", detail: listener.description) { ivs_accept4(listener.rawValue, flags) }
            return FileDescriptor(rawValue: raw)
        } catch let error as SystemCallError where error.errno == .wouldBlock || error.errno == Errno(rawValue: ECONNABORTED) {
            return nil
        }
    }

    /// `socketpair(AF_UNIX, SOCK_STREAM)`: two connected ends.
    public static func pair(nonBlocking: Bool = false) throws -> (FileDescriptor, FileDescriptor) {
        var type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        if nonBlocking { type |= Int32(SOCK_NONBLOCK.rawValue) }
        var fds: [Int32] = [-1, -1]
        _ = try retryingSystemCall("socketpair") { socketpair(AF_UNIX, type, 0, &fds) }
        return (FileDescriptor(rawValue: fds[0]), FileDescriptor(rawValue: fds[1]))
    }

    /// `shutdown(2)` of both directions: the peer sees end of file at once, even while
    /// another process still holds a copy of the descriptor.
    public static func shutdown(_ fd: FileDescriptor) throws {
        _ = try retryingSystemCall("shutdown", detail: fd.description) { Glibc.shutdown(fd.rawValue, Int32(SHUT_RDWR)) }
    }

    /// Looks at `path` and, when it is a socket, tries to connect to tell a live server from
    /// a stale file.
    public static func probe(path: String) throws -> PathState {
        guard let status = try FileSystem.status(ofPath: path) else { return .absent }
        guard status.isSocket else { return .notASocket }
        do {
            let fd = try connect(path: path)
            fd.closeQuietly()
            return .live
        } catch let error as SystemCallError where error.errno == .connectionRefused {
            return .stale
        } catch let error as SystemCallError where error.errno == .noEntry {
            return .absent  // removed between lstat and connect
        }
    }

    // MARK: Internals

    private static func makeSocket(nonBlocking: Bool) throws -> FileDescriptor {
        var type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        if nonBlocking { type |= Int32(SOCK_NONBLOCK.rawValue) }
        let raw = try retryingSystemCall("socket(AF_UNIX)") { socket(AF_UNIX, type, 0) }
        return FileDescriptor(rawValue: raw)
    }

    private static func makeAddress(_ path: String) throws -> sockaddr_un {
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty else {
            throw UnixSocketPathError(path: path, byteCount: 0)
        }
        guard bytes.count <= maxPathLength, !bytes.contains(0) else {
            throw UnixSocketPathError(path: path, byteCount: bytes.count)
        }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        return address
    }
}
