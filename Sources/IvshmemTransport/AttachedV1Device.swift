import IvshmemLink
import IvshmemModel
import IvshmemWire

/// A v1 device attached to a v1 server (ours or another, spec/ivshmem1.md §6): a ``V1Link``
/// composed with an ``IvshmemV1Device`` over the shared memory it received, its ID in
/// IVPosition (V1-REG-POS-1), doorbells through the link (V1-REG-DB-1) and the own eventfds'
/// events into the device (V1-IRQ-MSIX-1).
public final class AttachedV1Device: V1PeerLink, @unchecked Sendable {
    public let device: IvshmemV1Device
    public let link: V1Link
    public var id: UInt16 { link.id }

    /// Connects to `path` and attaches a `doorbell` device with `vectors` vectors.
    public static func attach(path: String, vectors: Int, checking: Bool = true, timeout: Double = 10) throws -> AttachedV1Device {
        try AttachedV1Device(link: V1Link(path: path, vectors: vectors, timeout: timeout), vectors: vectors, checking: checking)
    }

    private init(link: V1Link, vectors: Int, checking: Bool) throws {
        self.link = link
        let mapping = link.sharedMemory
        let memory = SharedMemory(base: mapping.base, size: mapping.size, owner: mapping)
        do {
            device = try IvshmemV1Device(configuration: V1DeviceConfiguration(personality: .doorbell, vectors: vectors, sharedMemorySize: UInt64(mapping.size), checking: checking),
                                         sharedMemory: memory)
        } catch {
            link.close()
            throw error
        }
        device.assignID(link.id)
        device.link = self
        let device = self.device
        try link.start { vector in device.receiveEvent(vector: vector) }
    }

    /// V1-REG-DB-1, V1-REG-DB-2.
    public func ring(target: UInt16, vector: Int) -> Bool { link.ring(target: target, vector: vector) }

    public var protocolErrors: [V1WireError] { link.protocolErrors }

    /// Leaves the server; safe to call more than once.
    public func close() { link.close() }
}
