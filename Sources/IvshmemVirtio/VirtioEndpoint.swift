import IvshmemModel
import IvshmemPlatform
import IvshmemPosix
import IvshmemSync
import IvshmemTransport

/// Why a virtio-over-ivshmem endpoint cannot work, or a driver operation failed.
public struct VirtioError: Error, Sendable, CustomStringConvertible, Equatable {
    public var requirement: String?
    public var message: String
    public init(_ requirement: String?, _ message: String) {
        self.requirement = requirement
        self.message = message
    }
    public var description: String { requirement.map { "[\($0)] " + message } ?? message }
}

/// One side of a virtio-over-ivshmem link: an emulated ivshmem v2 device attached to a server,
/// plugged into a platform of its own with MSI-X on (what the hypervisor and the PCI core give
/// a driver), its R/W section as plain memory, its registers through BAR0, and every interrupt
/// turned into a signal on one eventfd that the caller's event loop watches.
public final class VirtioEndpoint: @unchecked Sendable {
    public let link: AttachedDevice
    public let platform = PCIPlatform()
    public let rw: RWSection
    public let findings = VirtioFindingLog()
    /// Readable after an interrupt; `takeInterrupts()` consumes it.
    public let interrupts: EventFD
    private let bars: [Int: UInt64]
    private let vectorsSeen = Locked<[UInt32]>([])

    public var device: IvshmemDevice { link.device }
    public var id: UInt32 { device.id }
    /// The other peer (VIRTIO-LINK-1: exactly two, IDs 0 and 1).
    public var peer: UInt32 { id == 0 ? 1 : 0 }
    public var protocolValue: UInt16 { device.configuration.protocolType }
    /// C000h–FFFFh: back-end; 8000h–BFFFh: front-end (VIRTIO-LINK-2).
    public var isBackEnd: Bool { protocolValue >= 0xC000 }
    public var vectors: Int { device.configuration.vectors }

    /// Attaches to the server at `socketPath` and checks the link is a virtio link: two peers,
    /// a virtio protocol, an R/W section of at least two pages (VIRTIO-LINK-1, -2, -3).
    public static func attach(socketPath: String, profile: String = "spec", checking: Bool = true, timeout: Double = 10) throws -> VirtioEndpoint {
        let link = try AttachedDevice.attach(socketPath: socketPath, options: AttachOptions(profile: profile, checking: checking, timeout: timeout))
        do {
            return try VirtioEndpoint(link: link)
        } catch {
            link.close()
            throw error
        }
    }

    init(link: AttachedDevice) throws {
        let c = link.device.configuration
        guard c.maxPeers == 2 else { throw VirtioError("VIRTIO-LINK-1", "virtio over ivshmem needs exactly 2 peers, the server says \(c.maxPeers)") }
        guard c.id <= 1 else { throw VirtioError("VIRTIO-LINK-1", "peer ID \(c.id) on a virtio link (must be 0 or 1)") }
        guard c.protocolType >= 0x8000 else {
            throw VirtioError("VIRTIO-LINK-2", "protocol 0x\(String(c.protocolType, radix: 16)) is not a virtio protocol (8000h-FFFFh)")
        }
        guard c.rwSectionSize >= 2 * 4096 else {
            throw VirtioError("VIRTIO-LINK-3", "R/W section of \(c.rwSectionSize) bytes; virtio over ivshmem needs at least 2 pages")
        }
        self.link = link
        let geometry = link.device.layout.geometry
        rw = RWSection(base: link.device.sharedMemory.base + Int(geometry.rwSectionOffset), size: Int(geometry.rwSectionSize))
        interrupts = try EventFD.create()
        bars = try DriverSetup.plugAndEnable(link.device, into: platform, at: BDF(device: 2))
        platform.interrupts.addHandler { [interrupts, vectorsSeen] record in
            if case .msix(let v, _, _) = record.kind { vectorsSeen.withLock { $0.append(UInt32(v)) } } else { vectorsSeen.withLock { $0.append(0) } }
            _ = try? interrupts.trySignal()
        }
    }

    /// Detaches (the server tells the other side, whose State Table entry for us reads 0).
    public func close() {
        link.close()
        interrupts.close()
    }

    // MARK: registers (through BAR0, as a driver's accesses)

    private func writeRegister(_ offset: UInt64, _ value: UInt32) {
        if let bar0 = bars[0] { platform.mmioWrite(bar0 + offset, size: 4, value: UInt64(value)) } else { device.writeRegister(offset, value) }
    }

    /// Rings the other peer's `vector`.
    public func ring(vector: UInt16) { writeRegister(device.registerOffsets.doorbell, BAR0Registers.doorbellValue(peer: peer, vector: UInt32(vector))) }
    /// Writes this peer's State register.
    public func setState(_ value: UInt32) { writeRegister(device.registerOffsets.state, value) }
    public var ownState: UInt32 { device.stateTableEntry(id) }
    public var peerState: UInt32 { device.stateTableEntry(peer) }
    public var peerConnected: Bool { link.isActive(peer) }

    // MARK: interrupts

    /// The vectors that interrupted since the last call (consumes the eventfd).
    public func takeInterrupts() -> [UInt32] {
        _ = try? interrupts.tryConsume()
        return vectorsSeen.withLock { v in
            let out = v
            v.removeAll()
            return out
        }
    }

    /// Waits up to `timeout` seconds for an interrupt; returns whether one came.
    @discardableResult
    public func waitForInterrupt(timeout: Double) -> Bool {
        (try? interrupts.wait(timeoutMilliseconds: Int32(max(0, min(timeout, 3600)) * 1000))) ?? false
    }
}
