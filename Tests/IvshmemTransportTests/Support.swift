import Foundation
import IvshmemModel
import IvshmemPlatform
import IvshmemPosix
import IvshmemServer
import IvshmemTransport
import IvshmemWire
import Logging
import Testing

/// A server that follows a script instead of the protocol: sends exactly the bytes and fds a
/// test gives it, so that every client-side check (WIRE-CLI-*) can be provoked on purpose.
final class ScriptedServer: @unchecked Sendable {
    let directory: String
    let path: String
    private let listener: FileDescriptor
    private var connection: FileDescriptor?
    private var thread: Thread?
    private let done = DispatchSemaphore(value: 0)
    private var closed = false

    init() throws {
        directory = try FileSystem.makeTemporaryDirectory(template: "/tmp/ivshmem2-scripted.XXXXXX")
        path = directory + "/s.sock"
        listener = try UnixSocket.listen(path: path, backlog: 4, nonBlocking: false)
    }

    /// Accepts one client on a background thread and runs `script` on its connection.
    func serve(_ script: @escaping @Sendable (ScriptedServer, FileDescriptor) throws -> Void) {
        let t = Thread { [self] in
            defer { done.signal() }
            guard let c = try? UnixSocket.accept(listener, nonBlocking: false) else { return }
            connection = c
            try? script(self, c)
        }
        thread = t
        t.start()
    }

    /// Waits for the script to finish (it returns after its last send).
    func waitForScript() { done.wait() }

    func send(_ c: FileDescriptor, _ bytes: [UInt8], fds: [FileDescriptor] = []) throws {
        var sent = 0
        var attach = fds
        while sent < bytes.count {
            sent += try UnixSocket.sendMessage(on: c, bytes: Array(bytes[sent...]), fds: attach)
            attach = []
        }
    }

    func send(_ c: FileDescriptor, _ m: WireMessage, fd: FileDescriptor? = nil) throws {
        try send(c, m.encode(), fds: fd.map { [$0] } ?? [])
    }

    /// Idempotent.
    func close() {
        guard !closed else { return }
        closed = true
        connection?.closeQuietly()
        connection = nil
        listener.closeQuietly()
        FileSystem.removeDirectoryTree(directory)
    }
}

/// Raw bytes of a message with an arbitrary type/len header.
func rawMessage(type: UInt32, length: UInt32, body: [UInt8]) -> [UInt8] {
    var b: [UInt8] = []
    for v in [type, length] { withUnsafeBytes(of: v.littleEndian) { b += $0 } }
    return b + body
}

func le32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
func le64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }

/// A shared-memory fd of `size` bytes (memfd).
func makeSharedMemory(size: Int) throws -> FileDescriptor {
    try IvshmemPosix.SharedMemory.createAnonymous(name: "test", size: size)
}

/// Polls until `condition` holds or `timeout` seconds pass.
func eventually(timeout: Double = 10, _ condition: () -> Bool) -> Bool {
    let deadline = Monotonic.now() + timeout
    while Monotonic.now() < deadline {
        if condition() { return true }
        Monotonic.sleep(seconds: 0.002)
    }
    return condition()
}

/// An embedded server (the real server code on its own thread) on a fresh socket path.
final class TestServer {
    let directory: String
    let path: String
    let thread: ServerThread

    init(maxPeers: UInt64 = 4, vectors: UInt64 = 2, size: UInt64 = 1 << 20, outputSectionSize: UInt64 = 0x10000, protocolValue: UInt64 = 0) throws {
        directory = try FileSystem.makeTemporaryDirectory(template: "/tmp/ivshmem2-transport.XXXXXX")
        path = directory + "/ivshmem.sock"
        var c = ServerConfiguration()
        c.socketPath = path
        c.maxPeers = maxPeers
        c.vectors = vectors
        c.size = size
        c.outputSectionSize = outputSectionSize
        c.protocolValue = protocolValue
        var logger = Logger(label: "test-server")
        logger.logLevel = .critical
        thread = try ServerThread.start(configuration: c, logger: logger)
    }

    func stop() {
        thread.stop()
        FileSystem.removeDirectoryTree(directory)
    }
}

/// A device on a platform with MSI-X programmed (data = vector) and interrupts enabled, as a
/// driver would leave it.
struct DrivenDevice {
    let link: AttachedDevice
    let platform: PCIPlatform
    let bdf: BDF
    var device: IvshmemDevice { link.device }

    init(_ link: AttachedDevice) throws {
        self.link = link
        platform = PCIPlatform()
        bdf = try BDF(device: 3)
        try DriverSetup.plugAndEnable(link.device, into: platform, at: bdf, dataBase: 0x40)
    }

    /// Waits for an MSI-X message for `vector` logged after `after`.
    func waitForVector(_ vector: Int, after: Int = 0, timeout: Double = 10) -> InterruptRecord? {
        platform.interrupts.wait(after: after, timeout: timeout) {
            if case .msix(let v, _, _) = $0.kind { return v == vector }
            return false
        }
    }

    func ring(peer: UInt32, vector: UInt32) { device.writeRegister(0x0C, peer << 16 | vector) }
}
