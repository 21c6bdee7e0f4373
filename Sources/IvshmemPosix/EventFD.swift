#if canImport(Glibc)
import Glibc
#endif
import CIvshmemShim

/// An eventfd: a 64-bit counter in the kernel that one side adds to and the other side reads
/// (and so resets). ivshmem uses one per peer and vector as a doorbell.
///
/// Writes accumulate (two signals of 3 read back as 6). The reference server creates them
/// non-blocking, and that flag is shared by every process holding the descriptor, so
/// ``consume()`` polls before it reads and never blocks, whatever the flag says.
public struct EventFD: Hashable, Sendable {
    public let fd: FileDescriptor

    /// Adopts an eventfd received from elsewhere (e.g. an EVENT_FD message).
    public init(fd: FileDescriptor) { self.fd = fd }

    /// `eventfd(2)` with `EFD_CLOEXEC`.
    /// - Parameters:
    ///   - nonBlocking: `EFD_NONBLOCK` (what the reference server uses for peers' eventfds).
    ///   - semaphore: `EFD_SEMAPHORE`: each read returns 1 and decrements by 1.
    public static func create(initialValue: UInt32 = 0, nonBlocking: Bool = true, semaphore: Bool = false) throws -> EventFD {
        var flags = Int32(EFD_CLOEXEC)
        if nonBlocking { flags |= Int32(EFD_NONBLOCK) }
        if semaphore { flags |= Int32(EFD_SEMAPHORE) }
        let fd = try retryingSystemCall("eventfd") { ivs_eventfd(initialValue, flags) }
        return EventFD(fd: FileDescriptor(rawValue: fd))
    }

    /// Adds `n` to the counter, waking whoever waits on it.
    public func signal(_ n: UInt64 = 1) throws {
        var value = n
        _ = try retryingSystemCall("write(eventfd)", detail: fd.description) {
            Glibc.write(fd.rawValue, &value, MemoryLayout<UInt64>.size)
        }
    }

    /// Adds `n` to the counter only if that cannot block: `false` when the counter is full
    /// (a reader stopped reading) or the descriptor is not writable now.
    ///
    /// A peer's eventfd is shared with that peer, who can clear `O_NONBLOCK` on it (the flag
    /// belongs to the open file, not to us) and fill the counter, so a plain `write` could
    /// block the ringing device for ever. Polling with a zero timeout first closes that door;
    /// what is left is a window of a few instructions between the poll and the write.
    public func trySignal(_ n: UInt64 = 1) throws -> Bool {
        guard try fd.waitWritable(timeoutMilliseconds: 0) else { return false }
        var value = n
        while true {
            // EAGAIN is an answer here, not an error: no error value is built for it (this is
            // the doorbell path).
            if Glibc.write(fd.rawValue, &value, MemoryLayout<UInt64>.size) != -1 { return true }
            let e = Errno.current
            if e == .interrupted { continue }
            if e == .wouldBlock { return false }
            throw SystemCallError(call: "write(eventfd)", errno: e, detail: fd.description)
        }
    }

    /// Whether `fd` is an eventfd: the kernel names its anonymous inode `[eventfd]` in
    /// `/proc/self/fd`. Descriptors handed over a socket are checked with this before they are
    /// used as doorbells: a pipe or a socket in their place could block or never fire.
    public static func isEventFD(_ fd: FileDescriptor) -> Bool {
        (try? FileSystem.readLink("/proc/self/fd/\(fd.rawValue)")) == "anon_inode:[eventfd]"
    }

    /// Reads and resets the counter; nil when nothing is pending. Never blocks: it polls
    /// first, and treats `EAGAIN` (another reader was faster) as nothing pending.
    public func consume() throws -> UInt64? {
        guard try fd.waitReadable(timeoutMilliseconds: 0) else { return nil }
        return try tryConsume()
    }

    /// Reads and resets the counter without polling first: for a non-blocking eventfd that
    /// epoll already reported readable (one syscall instead of two). nil on `EAGAIN`.
    public func tryConsume() throws -> UInt64? {
        var value: UInt64 = 0
        while true {
            let n = Glibc.read(fd.rawValue, &value, MemoryLayout<UInt64>.size)
            if n == MemoryLayout<UInt64>.size { return value }
            if n == -1 {
                // EAGAIN (nothing pending) is the common answer of a spinning reader: no error
                // value is built for it.
                let e = Errno.current
                if e == .interrupted { continue }
                if e == .wouldBlock { return nil }
                throw SystemCallError(call: "read(eventfd)", errno: e, detail: fd.description)
            }
            // An eventfd always yields exactly 8 bytes; anything else is some other descriptor.
            throw SystemCallError(call: "read(eventfd)", errno: .invalidArgument, detail: "\(fd): read \(n) bytes, not 8: not an eventfd")
        }
    }

    /// Waits until the counter is non-zero, at most `timeoutMilliseconds` (-1: forever),
    /// without consuming it. Returns whether it is.
    public func wait(timeoutMilliseconds: Int32) throws -> Bool {
        try fd.waitReadable(timeoutMilliseconds: timeoutMilliseconds)
    }

    /// Closes the descriptor.
    public func close() {
        fd.closeQuietly()
    }
}
