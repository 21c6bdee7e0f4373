import IvshmemModel
import IvshmemPlatform
import IvshmemSpec
import IvshmemSync
import Testing

// MARK: register offsets (spec section 6)

enum Reg {
    static let id: UInt64 = 0x00
    static let maxPeers: UInt64 = 0x04
    static let interruptControl: UInt64 = 0x08
    static let doorbell: UInt64 = 0x0C
    static let state: UInt64 = 0x10
}

let allProfiles = ["spec", "jailhouse", "qemu-rfc"]
let bar2Profiles = ["spec", "qemu-rfc"]

/// Records every MSI-X message and INTx edge a device sends.
final class RecordingSink: InterruptSink, @unchecked Sendable {
    enum Event: Equatable, CustomStringConvertible {
        case msix(vector: Int, address: UInt64, data: UInt32)
        case intx(pin: UInt8)
        var description: String {
            switch self {
            case .msix(let v, let a, let d): return "msix(v\(v) @0x\(String(a, radix: 16)) = 0x\(String(d, radix: 16)))"
            case .intx(let p): return "intx(\(p))"
            }
        }
    }
    private let store = Locked<[Event]>([])
    var events: [Event] { store.withLock { $0 } }
    var messages: [Event] { events.filter { if case .msix = $0 { return true } else { return false } } }
    var edges: [Event] { events.filter { if case .intx = $0 { return true } else { return false } } }
    func clear() { store.withLock { $0.removeAll() } }

    func msixMessage(from device: IvshmemDevice, vector: Int, address: UInt64, data: UInt32) {
        store.withLock { $0.append(.msix(vector: vector, address: address, data: data)) }
    }
    func intxEdge(from device: IvshmemDevice, pin: UInt8) {
        store.withLock { $0.append(.intx(pin: pin)) }
    }
}

/// A link of `peers` devices over one in-process shared memory, each with a recording sink.
struct Rig {
    let fabric: LocalFabric
    let devices: [IvshmemDevice]
    let sinks: [RecordingSink]
    subscript(_ i: Int) -> IvshmemDevice { devices[i] }
}

func makeConfig(
    profile: String = "spec", id: UInt32 = 0, vectors: Int = 1, maxPeers: UInt32 = 2, rw: UInt64 = 0x1000, out: UInt64 = 0,
    interrupts: InterruptMode = .msix, registerSpace: RegisterSpace = .memory, protocolType: UInt16 = 0,
    baseAddress: UInt64 = 0x1_0000_0000
) -> DeviceConfiguration {
    DeviceConfiguration(
        profile: profile, id: id, maxPeers: maxPeers, vectors: vectors, protocolType: protocolType, rwSectionSize: rw,
        outputSectionSize: out, registerSpace: registerSpace, interrupts: interrupts, baseAddress: baseAddress)
}

func makeFabric(
    profile: String = "spec", vectors: Int = 1, peers: Int = 2, maxPeers: UInt32? = nil, rw: UInt64 = 0x1000, out: UInt64 = 0,
    interrupts: InterruptMode = .msix, registerSpace: RegisterSpace = .memory, protocolType: UInt16 = 0
) throws -> (LocalFabric, [IvshmemDevice]) {
    let template = makeConfig(
        profile: profile, vectors: vectors, maxPeers: maxPeers ?? UInt32(max(peers, 2)), rw: rw, out: out, interrupts: interrupts,
        registerSpace: registerSpace, protocolType: protocolType)
    let fabric = try LocalFabric(template: template)
    var devices: [IvshmemDevice] = []
    for _ in 0..<peers { devices.append(try fabric.addDevice()) }
    return (fabric, devices)
}

func makeRig(
    profile: String = "spec", vectors: Int = 1, peers: Int = 2, maxPeers: UInt32? = nil, rw: UInt64 = 0x1000, out: UInt64 = 0,
    interrupts: InterruptMode = .msix, registerSpace: RegisterSpace = .memory, protocolType: UInt16 = 0
) throws -> Rig {
    let (fabric, devices) = try makeFabric(
        profile: profile, vectors: vectors, peers: peers, maxPeers: maxPeers, rw: rw, out: out, interrupts: interrupts,
        registerSpace: registerSpace, protocolType: protocolType)
    let sinks = devices.map { d -> RecordingSink in
        let s = RecordingSink()
        d.interruptSink = s
        return s
    }
    return Rig(fabric: fabric, devices: devices, sinks: sinks)
}

/// A single device on its own fabric (the other IDs stay free).
func makeDevice(_ config: DeviceConfiguration) throws -> (LocalFabric, IvshmemDevice) {
    var template = config
    template.id = 0
    let fabric = try LocalFabric(template: template)
    return (fabric, try fabric.addDevice(id: config.id))
}

// MARK: driver-side helpers

extension IvshmemDevice {
    var vendorCap: Int { layout.capabilities.first { $0.kind == .vendor }!.offset }
    var msixCap: Int? { layout.capabilities.first { $0.kind == .msix }?.offset }

    func cfg8(_ off: Int) -> UInt32 { configRead(offset: off, size: 1) }
    func cfg16(_ off: Int) -> UInt32 { configRead(offset: off, size: 2) }
    func cfg32(_ off: Int) -> UInt32 { configRead(offset: off, size: 4) }
    func cfg64(_ off: Int) -> UInt64 { UInt64(cfg32(off)) | UInt64(cfg32(off + 4)) << 32 }

    /// The message data a test programs into entry `v`.
    static func testData(_ id: UInt32, _ v: Int) -> UInt32 { 0x4000 | id << 8 | UInt32(v) }
    static func testAddress(_ id: UInt32) -> UInt64 { 0xFEE0_0000 + UInt64(id) * 0x1000 }

    /// What a driver does to get MSI-X interrupts: Memory + Bus Master, program every entry,
    /// enable MSI-X, unmask, and set Interrupt Control.
    func driverEnableMSIX(unmask: Bool = true, interruptControl: Bool = true, busMaster: Bool = true) {
        configWrite(offset: 0x04, size: 2, value: busMaster ? 0x6 : 0x2)
        for v in 0..<configuration.vectors {
            let a = Self.testAddress(id)
            barWrite(1, offset: UInt64(16 * v), size: 4, value: a & 0xFFFF_FFFF)
            barWrite(1, offset: UInt64(16 * v + 4), size: 4, value: a >> 32)
            barWrite(1, offset: UInt64(16 * v + 8), size: 4, value: UInt64(Self.testData(id, v)))
        }
        if let cap = msixCap { configWrite(offset: cap + 2, size: 2, value: 0x8000) }
        if unmask { for v in 0..<configuration.vectors { barWrite(1, offset: UInt64(16 * v + 12), size: 4, value: 0) } }
        if interruptControl { writeRegister(Reg.interruptControl, 1) }
    }

    /// INTx driver setup: Memory decode, INTx Disable clear, Interrupt Control on.
    func driverEnableINTx() {
        configWrite(offset: 0x04, size: 2, value: 0x2)
        writeRegister(Reg.interruptControl, 1)
    }

    func setOneShot(_ on: Bool) {
        // Drivers use a dword write at +00h; only bit 0 of +03h may change (CFG-ACC-3).
        let dw = cfg32(vendorCap)
        configWrite(offset: vendorCap, size: 4, value: (dw & 0x00FF_FFFF) | (on ? 0x0100_0000 : 0))
    }

    func ring(_ target: UInt32, vector: UInt32) { writeRegister(Reg.doorbell, target << 16 | vector) }

    /// The expected MSI-X event for vector `v` of this device (as programmed by driverEnableMSIX).
    func expectedMessage(_ v: Int) -> RecordingSink.Event {
        .msix(vector: v, address: Self.testAddress(id), data: Self.testData(id, v))
    }

    var findingIDs: [String] { findings.map(\.requirement) }
}

func pow2ceil(_ v: UInt64) -> UInt64 {
    var p: UInt64 = 1
    while p < v { p <<= 1 }
    return p
}

#if canImport(Glibc)
import Glibc
#endif

/// Lazily backed anonymous memory (MAP_NORESERVE): lets a test build a device whose layout is
/// gigabytes large without touching more than the pages it uses.
final class LazyMapping: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let size: Int
    init(size: Int) {
        let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        precondition(p != MAP_FAILED, "mmap of \(size) bytes failed")
        base = p!
        self.size = size
    }
    deinit { munmap(base, size) }
}

/// A single device over lazily mapped memory of exactly its layout size (no link).
func makeLargeDevice(_ config: DeviceConfiguration) throws -> IvshmemDevice {
    let total = try config.geometry().totalSize
    let mapping = LazyMapping(size: Int(total))
    return try IvshmemDevice(configuration: config, sharedMemory: SharedMemory(base: mapping.base, size: mapping.size, owner: mapping), link: nil)
}
