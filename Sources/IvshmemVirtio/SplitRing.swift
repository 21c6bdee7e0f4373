/// Where a split virtqueue lives in the R/W section (VIRTIO-Q-3, VIRTIO-Q-5): the descriptor
/// table (16 bytes per entry, 16-aligned), the available ring (flags, idx, ring[size],
/// used_event; 2-aligned) and the used ring (flags, idx, ring[size] of {id, len}, avail_event;
/// 4-aligned), all as offsets into the R/W section.
public struct SplitRingLayout: Sendable, Equatable, CustomStringConvertible {
    public var size: UInt16
    public var desc: UInt64
    public var avail: UInt64
    public var used: UInt64

    public init(size: UInt16, desc: UInt64, avail: UInt64, used: UInt64) {
        self.size = size
        self.desc = desc
        self.avail = avail
        self.used = used
    }

    public static func descBytes(_ n: Int) -> Int { 16 * n }
    public static func availBytes(_ n: Int) -> Int { 6 + 2 * n }
    public static func usedBytes(_ n: Int) -> Int { 6 + 8 * n }

    public var description: String {
        "size \(size), desc 0x\(String(desc, radix: 16)), driver 0x\(String(avail, radix: 16)), device 0x\(String(used, radix: 16))"
    }

    /// Why this layout is unusable in `rw` past a header of `headerSize` bytes, or nil.
    public func problem(in rw: RWSection, headerSize: Int) -> (requirement: String, message: String)? {
        let n = Int(size)
        guard n > 0, n <= 32768, n & (n - 1) == 0 else { return ("VIRTIO-Q-2", "queue size \(size) is not a power of two in 1...32768") }
        let parts: [(String, UInt64, Int, UInt64)] = [
            ("descriptor table", desc, Self.descBytes(n), 16), ("driver area", avail, Self.availBytes(n), 2), ("device area", used, Self.usedBytes(n), 4),
        ]
        for (name, offset, bytes, alignment) in parts {
            guard rw.contains(offset: offset, length: UInt64(bytes)) else {
                return ("VIRTIO-Q-3", "\(name) at 0x\(String(offset, radix: 16)) (\(bytes) bytes) is outside the R/W section of \(rw.size) bytes")
            }
            guard offset % alignment == 0 else { return ("VIRTIO-Q-3", "\(name) at 0x\(String(offset, radix: 16)) is not \(alignment)-byte aligned") }
            guard offset >= UInt64(headerSize) else {
                return ("VIRTIO-Q-3", "\(name) at 0x\(String(offset, radix: 16)) overlaps the virtio header (\(headerSize) bytes)")
            }
        }
        return nil
    }
}

/// Descriptor flags (virtio 1.x §2.7.5).
public enum DescriptorFlag {
    public static let next: UInt16 = 1
    public static let write: UInt16 = 2
    public static let indirect: UInt16 = 4
}

/// One buffer of a descriptor chain: an R/W-section range, device-readable or device-writable.
public struct VirtioBuffer: Sendable, Equatable {
    public var offset: Int
    public var length: Int
    public var writable: Bool
    public init(offset: Int, length: Int, writable: Bool) {
        self.offset = offset
        self.length = length
        self.writable = writable
    }
}

/// A descriptor chain the back-end popped: its head index and its buffers in chain order.
public struct VirtioChain: Sendable {
    public var head: UInt16
    public var buffers: [VirtioBuffer]
    public var readable: [VirtioBuffer] { buffers.filter { !$0.writable } }
    public var writable: [VirtioBuffer] { buffers.filter(\.writable) }
}

/// The back-end's side of one split virtqueue (device side): pop available chains, push used.
public final class DeviceQueue: @unchecked Sendable {
    public let index: Int
    public let layout: SplitRingLayout
    public let driverVector: UInt16
    let rw: RWSection
    let findings: VirtioFindingLog
    /// The next available-ring position to consume (0 at enable, VIRTIO-Q-5).
    public private(set) var nextAvail: UInt16 = 0

    init(index: Int, layout: SplitRingLayout, driverVector: UInt16, rw: RWSection, findings: VirtioFindingLog) {
        self.index = index
        self.layout = layout
        self.driverVector = driverVector
        self.rw = rw
        self.findings = findings
    }

    private var availIdx: UInt16 { rw.load(Int(layout.avail) + 2) }

    /// Whether the driver made buffers available that were not popped yet.
    public var hasAvailable: Bool {
        rw.fence()
        return availIdx != nextAvail
    }

    /// The next available chain, or nil. A chain that breaks VIRTIO-Q-4 (a buffer outside the
    /// R/W section, an index beyond the table, a loop, an indirect descriptor) is recorded as a
    /// finding, returned to the driver as used with length 0, and skipped.
    public func pop() -> VirtioChain? {
        while hasAvailable {
            let n = Int(layout.size)
            let head: UInt16 = rw.load(Int(layout.avail) + 4 + 2 * (Int(nextAvail) % n))
            nextAvail &+= 1
            switch walk(head: head) {
            case .success(let buffers): return VirtioChain(head: head, buffers: buffers)
            case .failure(let problem):
                findings.record("VIRTIO-Q-4", .frontEnd, "queue \(index): chain at descriptor \(head): \(problem.message)")
                if Int(head) < n { push(head: head, written: 0) }
            }
        }
        return nil
    }

    private struct ChainProblem: Error { var message: String }

    private func walk(head: UInt16) -> Result<[VirtioBuffer], ChainProblem> {
        let n = Int(layout.size)
        var out: [VirtioBuffer] = []
        var i = Int(head)
        var seenWritable = false
        for _ in 0..<n {
            guard i < n else { return .failure(ChainProblem(message: "descriptor index \(i) beyond the table of \(n)")) }
            let d = Int(layout.desc) + 16 * i
            let addr: UInt64 = rw.load(d), len: UInt32 = rw.load(d + 8), flags: UInt16 = rw.load(d + 12), next: UInt16 = rw.load(d + 14)
            guard flags & DescriptorFlag.indirect == 0 else { return .failure(ChainProblem(message: "indirect descriptor (VIRTIO_F_INDIRECT_DESC not offered)")) }
            guard rw.contains(offset: addr, length: UInt64(len)) else {
                return .failure(ChainProblem(message: "buffer at 0x\(String(addr, radix: 16)) (\(len) bytes) is outside the R/W section of \(rw.size) bytes"))
            }
            let writable = flags & DescriptorFlag.write != 0
            guard writable || !seenWritable else { return .failure(ChainProblem(message: "a device-readable buffer after a device-writable one")) }
            seenWritable = seenWritable || writable
            out.append(VirtioBuffer(offset: Int(addr), length: Int(len), writable: writable))
            guard flags & DescriptorFlag.next != 0 else { return .success(out) }
            i = Int(next)
        }
        return .failure(ChainProblem(message: "chain longer than the queue (\(n)): a loop"))
    }

    /// Returns chain `head` to the driver, with `written` bytes written into its writable part.
    public func push(head: UInt16, written: UInt32) {
        let n = Int(layout.size)
        let usedIdx: UInt16 = rw.load(Int(layout.used) + 2)
        let e = Int(layout.used) + 4 + 8 * (Int(usedIdx) % n)
        rw.store(e, UInt32(head))
        rw.store(e + 4, written)
        rw.fence()
        rw.store(Int(layout.used) + 2, usedIdx &+ 1)
        rw.fence()
    }
}

/// The front-end's side of one split virtqueue (driver side): add chains, take used ones.
public final class DriverQueue: @unchecked Sendable {
    public let index: Int
    public let layout: SplitRingLayout
    public let deviceVector: UInt16
    public let driverVector: UInt16
    let rw: RWSection
    let findings: VirtioFindingLog
    private var freeList: [UInt16]
    private var chainLength: [Int]
    private var availShadow: UInt16 = 0
    private var lastUsed: UInt16 = 0
    public private(set) var inFlight = 0

    init(index: Int, layout: SplitRingLayout, deviceVector: UInt16, driverVector: UInt16, rw: RWSection, findings: VirtioFindingLog) {
        self.index = index
        self.layout = layout
        self.deviceVector = deviceVector
        self.driverVector = driverVector
        self.rw = rw
        self.findings = findings
        freeList = (0..<layout.size).reversed().map { $0 }
        chainLength = Array(repeating: 0, count: Int(layout.size))
    }

    /// Puts `buffers` (readable ones first) on the available ring as one chain; returns its
    /// head, or nil when the table has too few free descriptors.
    @discardableResult
    public func add(_ buffers: [VirtioBuffer]) -> UInt16? {
        guard !buffers.isEmpty, buffers.count <= freeList.count else { return nil }
        let ids = (0..<buffers.count).map { _ in freeList.removeLast() }
        for (k, b) in buffers.enumerated() {
            let d = Int(layout.desc) + 16 * Int(ids[k])
            rw.store(d, UInt64(b.offset))
            rw.store(d + 8, UInt32(b.length))
            var flags: UInt16 = b.writable ? DescriptorFlag.write : 0
            if k + 1 < buffers.count { flags |= DescriptorFlag.next }
            rw.store(d + 12, flags)
            rw.store(d + 14, k + 1 < buffers.count ? ids[k + 1] : 0)
        }
        let head = ids[0]
        chainLength[Int(head)] = buffers.count
        let n = Int(layout.size)
        rw.store(Int(layout.avail) + 4 + 2 * (Int(availShadow) % n), head)
        rw.fence()
        availShadow &+= 1
        rw.store(Int(layout.avail) + 2, availShadow)
        rw.fence()
        inFlight += 1
        return head
    }

    /// The next used chain (head, bytes written), or nil; frees its descriptors. A used entry
    /// naming no chain in flight is a back-end violation (VIRTIO-Q-5), recorded and skipped.
    public func takeUsed() -> (head: UInt16, written: UInt32)? {
        rw.fence()
        while (rw.load(Int(layout.used) + 2) as UInt16) != lastUsed {
            let n = Int(layout.size)
            let e = Int(layout.used) + 4 + 8 * (Int(lastUsed) % n)
            let id: UInt32 = rw.load(e), len: UInt32 = rw.load(e + 4)
            lastUsed &+= 1
            guard id < UInt32(n), chainLength[Int(id)] > 0 else {
                findings.record("VIRTIO-Q-5", .backEnd, "queue \(index): used entry names descriptor \(id), which is no chain in flight")
                continue
            }
            var i = UInt16(id)
            for k in 0..<chainLength[Int(id)] {
                freeList.append(i)
                if k + 1 < chainLength[Int(id)] { i = rw.load(Int(layout.desc) + 16 * Int(i) + 14) }
            }
            chainLength[Int(id)] = 0
            inFlight -= 1
            return (UInt16(id), len)
        }
        return nil
    }
}
