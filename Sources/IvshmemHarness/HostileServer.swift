import Foundation
import IvshmemPosix
import IvshmemWire

/// A server that follows a script instead of the protocol: it accepts one device and sends
/// exactly the bytes and fds the script gives it, so that every client-side check (WIRE-CLI-*)
/// can be provoked on purpose — malformed messages, missing or extra fds, lies about sizes.
public final class HostileServer: @unchecked Sendable {
    public let directory: String
    public let path: String
    private let listener: FileDescriptor
    public private(set) var connection: FileDescriptor?
    private var thread: Thread?
    private let done = DispatchSemaphore(value: 0)
    private let proceed = DispatchSemaphore(value: 0)
    private var closed = false
    public private(set) var scriptError: (any Error)?
    /// Descriptors the script created and keeps (closed by `close()`).
    public var kept: [FileDescriptor] = []

    public init() throws {
        directory = try FileSystem.makeTemporaryDirectory(template: "/tmp/ivshmem2-hostile.XXXXXX")
        path = directory + "/s.sock"
        do { listener = try UnixSocket.listen(path: path, backlog: 4, nonBlocking: false) } catch {
            FileSystem.removeDirectoryTree(directory)
            throw error
        }
    }

    deinit { close() }

    /// Accepts one client on a background thread and runs `script` on its connection.
    public func serve(_ script: @escaping @Sendable (HostileServer, FileDescriptor) throws -> Void) {
        let t = Thread { [self] in
            defer { done.signal() }
            guard let c = try? UnixSocket.accept(listener, nonBlocking: false) else { return }
            connection = c
            do { try script(self, c) } catch { scriptError = error }
        }
        thread = t
        t.start()
    }

    public func waitForScript() { done.wait() }

    public func send(_ c: FileDescriptor, _ bytes: [UInt8], fds: [FileDescriptor] = []) throws {
        var sent = 0
        var attach = fds
        while sent < bytes.count {
            sent += try UnixSocket.sendMessage(on: c, bytes: Array(bytes[sent...]), fds: attach)
            attach = []
        }
    }

    public func send(_ c: FileDescriptor, _ m: WireMessage, fd: FileDescriptor? = nil) throws {
        try send(c, m.encode(), fds: fd.map { [$0] } ?? [])
    }

    /// A shared-memory fd (memfd) kept by the server.
    public func sharedMemory(size: Int) throws -> FileDescriptor {
        let fd = try IvshmemPosix.SharedMemory.createAnonymous(name: "hostile", size: size)
        kept.append(fd)
        return fd
    }

    /// An eventfd kept by the server.
    public func eventFD() throws -> EventFD {
        let e = try EventFD.create()
        kept.append(e.fd)
        return e
    }

    /// Closes the connection only (the device sees the hang-up).
    public func hangUp() {
        connection?.closeQuietly()
        connection = nil
    }

    /// Idempotent.
    public func close() {
        guard !closed else { return }
        closed = true
        connection?.closeQuietly()
        connection = nil
        listener.closeQuietly()
        for fd in kept { fd.closeQuietly() }
        kept.removeAll()
        FileSystem.removeDirectoryTree(directory)
    }
}

