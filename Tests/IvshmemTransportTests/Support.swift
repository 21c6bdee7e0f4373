import Foundation
import IvshmemHarness
import IvshmemModel
import IvshmemPlatform
import IvshmemPosix
import IvshmemServer
import IvshmemTransport
import IvshmemWire
import IvshmemTestSupport
import Logging
import Testing

/// The harness's scripted hostile server.
typealias ScriptedServer = HostileServer

/// A shared-memory fd of `size` bytes (memfd).
func makeSharedMemory(size: Int) throws -> FileDescriptor {
    try IvshmemPosix.SharedMemory.createAnonymous(name: "test", size: size)
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
