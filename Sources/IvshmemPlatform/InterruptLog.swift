#if canImport(Glibc)
import Glibc
#endif
import CIvshmemShim
import IvshmemModel
import IvshmemSync

/// One interrupt the platform's interrupt controller saw.
public struct InterruptRecord: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// A message write: `data` to `address`, from table entry `vector` (IRQ-MSIX-1).
        case msix(vector: Int, address: UInt64, data: UInt32)
        /// An edge on INTA#…INTD# (IRQ-INTX-1).
        case intx(pin: UInt8)
    }
    public var source: BDF
    public var kind: Kind
    /// Monotonic nanoseconds.
    public var time: UInt64
    /// Position in the log, from 0.
    public var sequence: Int

    public var description: String {
        switch kind {
        case .msix(let v, let a, let d):
            return "\(source) MSI-X vector \(v): write 0x\(String(d, radix: 16)) to 0x\(String(a, radix: 16))"
        case .intx(let pin):
            return "\(source) INT\(["?", "A", "B", "C", "D"][Int(min(pin, 4))])# edge"
        }
    }
}

/// The platform's interrupt controller: records every MSI-X message and INTx edge, calls
/// handlers, and lets a caller wait for the next one with a timeout.
///
/// The log keeps the newest ``capacity`` records (a peer that rings in a loop for hours costs
/// fixed memory); ``count`` and each record's `sequence` count every interrupt ever logged, so
/// cursors stay valid after old records were dropped.
///
/// Concurrency: a bounded ring (`ivs_irq_ring`) that writers do not serialise on — a writer
/// reserves its sequence number with one atomic add, runs the handlers, then publishes its
/// record; records become visible in sequence order (the published prefix), and waiters sleep
/// on a futex word. Handlers run on the delivering thread before any waiter can see the record,
/// so whoever waits for an interrupt sees what its handlers did; handlers of interrupts from
/// different threads may run at the same time.
public final class InterruptLog: @unchecked Sendable {
    public static let capacity = 65_536
    private let ring: OpaquePointer
    /// Handlers, as an immutable list published through an atomic pointer: read on every
    /// interrupt without a lock. Replaced lists are kept until the log goes away (handlers
    /// are added a few times per run), so a reader never sees a freed list.
    private let handlerSlot = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: 1)
    private let handlerLists = Locked<[HandlerList]>([])

    private final class HandlerList: Sendable {
        let handlers: [@Sendable (InterruptRecord) -> Void]
        init(_ h: [@Sendable (InterruptRecord) -> Void]) { handlers = h }
    }

    public init() {
        guard let r = ivs_irq_ring_create(UInt64(Self.capacity)) else { fatalError("out of memory for the interrupt log") }
        ring = r
        handlerSlot.initialize(to: nil)
    }

    deinit {
        ivs_irq_ring_destroy(ring)
        handlerSlot.deallocate()
    }

    /// Adds a handler called (on the delivering thread) for each interrupt.
    public func addHandler(_ h: @escaping @Sendable (InterruptRecord) -> Void) {
        handlerLists.withLock { lists in
            let list = HandlerList((lists.last?.handlers ?? []) + [h])
            lists.append(list)
            ivs_store_ptr_release(handlerSlot, Unmanaged.passUnretained(list).toOpaque())
        }
    }

    /// The records kept, oldest first.
    public var all: [InterruptRecord] { since(0) }

    /// The kept records with sequence ≥ `position`.
    public func since(_ position: Int) -> [InterruptRecord] {
        let end = ivs_irq_ring_published(ring)
        var n = max(UInt64(max(position, 0)), end > UInt64(Self.capacity) ? end - UInt64(Self.capacity) : 0)
        var out: [InterruptRecord] = []
        while n < end {
            if let r = record(n) { out.append(r) }
            n += 1
        }
        return out
    }

    /// Interrupts logged so far, kept or dropped: the sequence the next one gets.
    public var count: Int { Int(ivs_irq_ring_published(ring)) }

    /// Records dropped to stay within ``capacity``.
    public var dropped: Int { Int(ivs_irq_ring_overwritten(ring)) }

    private func record(_ n: UInt64) -> InterruptRecord? {
        var c = ivs_irq_record()
        guard ivs_irq_ring_read(ring, n, &c) == 1 else { return nil }
        let source = (try? BDF(bus: UInt8(c.source >> 8 & 0xFF), device: UInt8(c.source >> 3 & 0x1F), function: UInt8(c.source & 7)))!
        let kind: InterruptRecord.Kind = c.kind == 0
            ? .msix(vector: Int(c.vector), address: c.address, data: c.data)
            : .intx(pin: UInt8(truncatingIfNeeded: c.vector))
        return InterruptRecord(source: source, kind: kind, time: c.time, sequence: Int(n))
    }

    /// Handlers run first (so they may read the log), then the record is published and
    /// waiters wake: whoever waits for an interrupt sees what its handlers did.
    func append(source: BDF, kind: InterruptRecord.Kind) {
        let n = ivs_irq_ring_reserve(ring)
        let r = InterruptRecord(source: source, kind: kind, time: Self.now(), sequence: Int(n))
        if let p = ivs_load_ptr_acquire(handlerSlot) {
            Unmanaged<HandlerList>.fromOpaque(p)._withUnsafeGuaranteedRef { list in
                for h in list.handlers { h(r) }
            }
        }
        var c = ivs_irq_record()
        c.source = UInt32(source.bus) << 8 | UInt32(source.device) << 3 | UInt32(source.function)
        switch kind {
        case .msix(let vector, let address, let data):
            c.kind = 0
            c.vector = Int64(vector)
            c.address = address
            c.data = data
        case .intx(let pin):
            c.kind = 1
            c.vector = Int64(pin)
        }
        c.time = r.time
        ivs_irq_ring_publish(ring, n, &c)
    }

    /// Waits until an interrupt with sequence ≥ `after` matching `predicate` is logged, or
    /// `timeout` seconds pass (nil then).
    public func wait(after: Int = 0, timeout: Double, where predicate: (InterruptRecord) -> Bool = { _ in true }) -> InterruptRecord? {
        // Clamp: a non-finite or huge timeout must not trap the conversion (a day is plenty).
        let seconds = timeout.isFinite ? min(max(timeout, 0), 86_400) : 86_400
        let deadline = Self.now() + UInt64(seconds * 1e9)
        var scanned = max(after, 0)
        while true {
            let epoch = ivs_irq_ring_epoch(ring)
            let end = count
            if scanned < end {
                for r in since(scanned) where predicate(r) { return r }
                scanned = end
            }
            let now = Self.now()
            if now >= deadline { return nil }
            ivs_irq_ring_wait(ring, epoch, Int64(deadline - now))
        }
    }

    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
