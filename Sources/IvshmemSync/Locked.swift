import CIvshmemShim
import Synchronization

/// A value behind a lock: `Synchronization.Mutex` that ThreadSanitizer can see.
///
/// On Linux a contended `Mutex` is taken and handed over inside the kernel (a priority-
/// inheritance futex), which TSan does not model: it then reports races between accesses the
/// lock does order. `withLock` tells TSan about the ordering (acquire after locking, release
/// before unlocking); without the TSan runtime those calls do nothing. Use this, not `Mutex`,
/// for state shared between threads, so `make test-sanitize` reports only real races.
public final class Locked<Value>: @unchecked Sendable {
    @usableFromInline let mutex: Mutex<Value>

    public init(_ initial: sending Value) { mutex = Mutex(initial) }

    /// Runs `body` with the value, holding the lock.
    @inlinable
    public func withLock<Result, E: Error>(_ body: (inout sending Value) throws(E) -> sending Result) throws(E) -> sending Result {
        let address = Unmanaged.passUnretained(self).toOpaque()
        return try mutex.withLock { (value: inout sending Value) throws(E) -> sending Result in
            ivs_tsan_acquire(address)
            defer { ivs_tsan_release(address) }
            return try body(&value)
        }
    }
}
