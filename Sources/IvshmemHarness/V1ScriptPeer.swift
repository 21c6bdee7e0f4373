import IvshmemModel
import IvshmemPlatform
import IvshmemPosix
import IvshmemSync
import IvshmemTransport

/// What a driver does to a v1 device after probing (spec/ivshmem1.md): decoding and bus
/// mastering on, MSI-X entry v = address FEE00000h, data v, unmasked, MSI-X enabled.
public enum V1DriverSetup {
    public static func ready(_ device: IvshmemV1Device) {
        device.configWrite(offset: PCIConfig.command, size: 2, value: UInt32(PCICommand([.memorySpace, .busMaster]).rawValue))
        for v in 0..<device.configuration.vectors {
            let entry = UInt64(v * MSIXTableEntry.size)
            device.barWrite(1, offset: entry + UInt64(MSIXTableEntry.messageAddress), size: 4, value: DriverSetup.messageAddress)
            device.barWrite(1, offset: entry + UInt64(MSIXTableEntry.messageData), size: 4, value: UInt64(v))
            device.barWrite(1, offset: entry + UInt64(MSIXTableEntry.vectorControl), size: 4, value: 0)
        }
        device.configWrite(offset: IvshmemV1Device.msixCapabilityOffset + MSIXControl.capabilityOffset, size: 2, value: UInt32(MSIXControl.enable.rawValue))
    }
}

/// A v1 device a script joined to a `server protocol=v1`: its interrupts, numbered in arrival
/// order, for `wait irq` and `expect no-irq`.
final class V1ScriptPeer: V1InterruptSink, @unchecked Sendable {
    struct Message: CustomStringConvertible {
        var sequence: Int
        var vector: Int
        var address: UInt64
        var data: UInt32
        var description: String { "MSI-X vector \(vector) address 0x\(String(address, radix: 16)) data 0x\(String(data, radix: 16))" }
    }

    let name: String
    let attached: AttachedV1Device
    private let trace: TraceRecorder
    private let messages = Locked<[Message]>([])
    var device: IvshmemV1Device { attached.device }
    var id: UInt16 { attached.id }

    init(name: String, socketPath: String, vectors: Int, checking: Bool, ready: Bool, trace: TraceRecorder) throws {
        self.name = name
        self.trace = trace
        attached = try AttachedV1Device.attach(path: socketPath, vectors: vectors, checking: checking)
        attached.device.interruptSink = self
        if ready { V1DriverSetup.ready(attached.device) }
        trace.record(name, .lifecycle, detail: "v1 device attached as peer \(attached.id)")
    }

    func msixMessage(vector: Int, address: UInt64, data: UInt32) {
        messages.withLock { $0.append(Message(sequence: $0.count, vector: vector, address: address, data: data)) }
        trace.record(name, .interrupt, address: address, value: UInt64(data), detail: "MSI-X vector \(vector)")
    }

    func intxLevel(_ asserted: Bool) {}

    /// The first message at or after `cursor` (of `vector`, if given), waiting up to `timeout`.
    func waitForMessage(vector: Int?, after cursor: Int, timeout: Double) -> Message? {
        var found: Message?
        _ = Monotonic.poll(timeout: timeout) {
            found = messages.withLock { $0.dropFirst(cursor).first { vector == nil || $0.vector == vector } }
            return found != nil
        }
        return found
    }

    func messages(since cursor: Int) -> [Message] { messages.withLock { Array($0.dropFirst(cursor)) } }

    func leave() {
        attached.close()
        trace.record(name, .lifecycle, detail: "v1 device left")
    }
}
