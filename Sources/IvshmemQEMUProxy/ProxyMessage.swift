/// The messages of QEMU's multi-process PCI proxy (`-device x-pci-proxy-dev,fd=N`), as QEMU 7.2
/// frames them on its UNIX stream socket (facts from `include/hw/remote/mpqemu-link.h` and
/// `hw/remote/proxy.c`):
///
/// - a 16-byte header: the command as a little-endian `int32`, 4 bytes of padding, the payload
///   size as a little-endian `uint64`;
/// - then `size` payload bytes (at most 192, the largest payload: the memory-sync table);
/// - descriptors (at most 8) travel as SCM_RIGHTS with the header.
///
/// QEMU is always the one asking: config and BAR accesses and resets wait for a `RET` message
/// with an 8-byte value; `SET_IRQFD` and `SYNC_SYSMEM` are not answered.
public enum ProxyCommand: Int32, Sendable, CaseIterable, CustomStringConvertible {
    case syncSystemMemory = 0
    case ret = 1
    case configWrite = 2
    case configRead = 3
    case barWrite = 4
    case barRead = 5
    case setIRQFD = 6
    case deviceReset = 7

    /// QEMU's own name, so that an error can be matched with QEMU's sources and traces.
    public var description: String {
        switch self {
        case .syncSystemMemory: "SYNC_SYSMEM"
        case .ret: "RET"
        case .configWrite: "PCI_CFGWRITE"
        case .configRead: "PCI_CFGREAD"
        case .barWrite: "BAR_WRITE"
        case .barRead: "BAR_READ"
        case .setIRQFD: "SET_IRQFD"
        case .deviceReset: "DEVICE_RESET"
        }
    }

    /// The payload size QEMU sends with this command (sizeof of its C payload struct).
    var payloadSize: Int {
        switch self {
        case .syncSystemMemory: ProxyFrame.maxPayload
        case .ret: 8
        case .configWrite, .configRead: 12
        case .barWrite, .barRead: 24
        case .setIRQFD, .deviceReset: 0
        }
    }

    /// The descriptors this command may carry.
    var descriptorRange: ClosedRange<Int> {
        switch self {
        case .syncSystemMemory: 0...ProxyFrame.maxDescriptors
        case .setIRQFD: 2...2
        default: 0...0
        }
    }
}

/// Framing constants of the proxy link.
public enum ProxyFrame {
    public static let headerSize = 16
    /// The largest payload: three tables of 8 64-bit values (`SyncSysmemMsg`).
    public static let maxPayload = 192
    /// REMOTE_MAX_FDS.
    public static let maxDescriptors = 8

    /// A `RET` message carrying `value`: what every config access, BAR access and reset waits for.
    public static func reply(_ value: UInt64) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: headerSize + 8)
        store(UInt64(UInt32(bitPattern: ProxyCommand.ret.rawValue)), 4, into: &bytes, at: 0)
        store(8, 8, into: &bytes, at: 8)
        store(value, 8, into: &bytes, at: 16)
        return bytes
    }

    /// Any header (tests build malformed ones with it).
    public static func header(command: Int32, size: UInt64) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: headerSize)
        store(UInt64(UInt32(bitPattern: command)), 4, into: &bytes, at: 0)
        store(size, 8, into: &bytes, at: 8)
        return bytes
    }

    static func store(_ value: UInt64, _ width: Int, into bytes: inout [UInt8], at offset: Int) {
        for i in 0..<width { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
    }

    static func load(_ bytes: [UInt8], at offset: Int, width: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<width { v |= UInt64(bytes[offset + i]) << (8 * UInt64(i)) }
        return v
    }
}

/// A config-space access (`PciConfDataMsg`: address, value, length as 32-bit fields).
public struct ProxyConfigAccess: Sendable, Equatable {
    public var address: UInt32
    public var value: UInt32
    public var length: Int32

    public init(address: UInt32, value: UInt32 = 0, length: Int32) {
        self.address = address
        self.value = value
        self.length = length
    }

    init(payload p: [UInt8]) {
        address = UInt32(ProxyFrame.load(p, at: 0, width: 4))
        value = UInt32(ProxyFrame.load(p, at: 4, width: 4))
        length = Int32(bitPattern: UInt32(ProxyFrame.load(p, at: 8, width: 4)))
    }

    public var payload: [UInt8] {
        var p = [UInt8](repeating: 0, count: 12)
        ProxyFrame.store(UInt64(address), 4, into: &p, at: 0)
        ProxyFrame.store(UInt64(value), 4, into: &p, at: 4)
        ProxyFrame.store(UInt64(UInt32(bitPattern: length)), 4, into: &p, at: 8)
        return p
    }
}

/// A BAR access (`BarAccessMsg`): the guest-physical (or port) address, the value of a write,
/// the access size, and whether the BAR is memory (true) or I/O.
public struct ProxyBarAccess: Sendable, Equatable {
    public var address: UInt64
    public var value: UInt64
    public var size: UInt32
    public var memory: Bool

    public init(address: UInt64, value: UInt64 = 0, size: UInt32, memory: Bool = true) {
        self.address = address
        self.value = value
        self.size = size
        self.memory = memory
    }

    init(payload p: [UInt8]) {
        address = ProxyFrame.load(p, at: 0, width: 8)
        value = ProxyFrame.load(p, at: 8, width: 8)
        size = UInt32(ProxyFrame.load(p, at: 16, width: 4))
        memory = p[20] != 0
    }

    public var payload: [UInt8] {
        var p = [UInt8](repeating: 0, count: 24)
        ProxyFrame.store(address, 8, into: &p, at: 0)
        ProxyFrame.store(value, 8, into: &p, at: 8)
        ProxyFrame.store(UInt64(size), 4, into: &p, at: 16)
        p[20] = memory ? 1 : 0
        return p
    }
}
