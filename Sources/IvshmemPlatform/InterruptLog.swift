#if canImport(Glibc)
import Glibc
#endif
import IvshmemModel
import Synchronization

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
public final class InterruptLog: @unchecked Sendable {
    public static let capacity = 65_536
    private var records = BoundedLog<InterruptRecord>(capacity: InterruptLog.capacity)
    private var handlers: [@Sendable (InterruptRecord) -> Void] = []
    private var mutex = pthread_mutex_t()
    private var cond = pthread_cond_t()
    /// Held while one interrupt goes through the handlers and into the log, so that handlers
    /// see interrupts in sequence order and have run before a waiter sees the record.
    /// Recursive: a handler may cause another interrupt on the same thread.
    private var delivery = pthread_mutex_t()

    public init() {
        pthread_mutex_init(&mutex, nil)
        var recursive = pthread_mutexattr_t()
        pthread_mutexattr_init(&recursive)
        pthread_mutexattr_settype(&recursive, Int32(PTHREAD_MUTEX_RECURSIVE))
        pthread_mutex_init(&delivery, &recursive)
        pthread_mutexattr_destroy(&recursive)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(&cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(&cond)
        pthread_mutex_destroy(&mutex)
        pthread_mutex_destroy(&delivery)
    }

    /// Adds a handler called (on the delivering thread) for each interrupt.
    public func addHandler(_ h: @escaping @Sendable (InterruptRecord) -> Void) {
        pthread_mutex_lock(&mutex)
        handlers.append(h)
        pthread_mutex_unlock(&mutex)
    }

    /// The records kept, oldest first.
    public var all: [InterruptRecord] {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return records.elements
    }

    /// The kept records with sequence ≥ `position`.
    public func since(_ position: Int) -> [InterruptRecord] {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return records.elements(since: position)
    }

    /// Interrupts logged so far, kept or dropped: the sequence the next one gets.
    public var count: Int {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return records.total
    }

    /// Records dropped to stay within ``capacity``.
    public var dropped: Int {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return records.dropped
    }

    /// Handlers run first (outside the log's lock, so they may read the log), then the record
    /// is published and waiters wake: whoever waits for an interrupt sees what its handlers did.
    func append(source: BDF, kind: InterruptRecord.Kind) {
        pthread_mutex_lock(&delivery)
        defer { pthread_mutex_unlock(&delivery) }
        pthread_mutex_lock(&mutex)
        let r = InterruptRecord(source: source, kind: kind, time: Self.now(), sequence: records.total)
        let hs = handlers
        pthread_mutex_unlock(&mutex)
        for h in hs { h(r) }
        pthread_mutex_lock(&mutex)
        records.append(r)
        pthread_cond_broadcast(&cond)
        pthread_mutex_unlock(&mutex)
    }

    /// Waits until an interrupt with sequence ≥ `after` matching `predicate` is logged, or
    /// `timeout` seconds pass (nil then).
    public func wait(after: Int = 0, timeout: Double, where predicate: (InterruptRecord) -> Bool = { _ in true }) -> InterruptRecord? {
        // Clamp: a non-finite or huge timeout must not trap the conversion (a day is plenty).
        let seconds = timeout.isFinite ? min(max(timeout, 0), 86_400) : 86_400
        let deadline = Self.now() + UInt64(seconds * 1e9)
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        var scanned = after
        while true {
            if scanned < records.total {
                for r in records.elements(since: scanned) where predicate(r) { return r }
                scanned = records.total
            }
            let now = Self.now()
            if now >= deadline { return nil }
            var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
            _ = pthread_cond_timedwait(&cond, &mutex, &ts)
        }
    }

    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
