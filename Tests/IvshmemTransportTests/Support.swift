import Foundation
import IvshmemHarness
import IvshmemModel
import IvshmemPlatform
import IvshmemPosix
import IvshmemServer
import IvshmemTransport
import IvshmemWire
import Logging
import Testing

/// The harness's scripted hostile server.
typealias ScriptedServer = HostileServer

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
    Monotonic.poll(timeout: timeout, interval: 0.002, condition)
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

/// An embedded server and two driven devices (IDs 0 and 1) that hold each other's eventfds for
/// every vector, closed and stopped when `body` returns.
func withTwoDrivenPeers(_ body: (DrivenDevice, DrivenDevice) throws -> Void) throws {
    let server = try TestServer()
    defer { server.stop() }
    let a = try DrivenDevice(AttachedDevice.attach(socketPath: server.path))
    defer { a.link.close() }
    let b = try DrivenDevice(AttachedDevice.attach(socketPath: server.path))
    defer { b.link.close() }
    try #require(a.link.waitForIntroductions(timeout: 10) { $0 == [0, 1] } && b.link.waitForIntroductions(timeout: 10) { $0 == [0, 1] })
    try body(a, b)
}
