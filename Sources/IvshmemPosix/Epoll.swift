#if canImport(Glibc)
import Glibc
#endif
import CIvshmemShim

/// An epoll instance: register descriptors with a caller-chosen 64-bit token, then wait for
/// readiness. Level-triggered unless ``Events/edgeTriggered`` is given.
public final class Epoll {
    /// Readiness conditions (the `EPOLL*` flags).
    public struct Events: OptionSet, Sendable, Hashable, CustomStringConvertible {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }

        /// `EPOLLIN`: data (or end of file, or a connection to accept) is there to read.
        public static let readable = Events(rawValue: UInt32(EPOLLIN.rawValue))
        /// `EPOLLOUT`: a write would not block.
        public static let writable = Events(rawValue: UInt32(EPOLLOUT.rawValue))
        /// `EPOLLHUP`: hung up (always reported, needs no registration).
        public static let hangUp = Events(rawValue: UInt32(EPOLLHUP.rawValue))
        /// `EPOLLERR`: an error condition (always reported).
        public static let error = Events(rawValue: UInt32(EPOLLERR.rawValue))
        /// `EPOLLRDHUP`: the peer shut down its writing side.
        public static let readHangUp = Events(rawValue: ivs_epoll_rdhup())
        /// `EPOLLET`: edge-triggered.
        public static let edgeTriggered = Events(rawValue: UInt32(EPOLLET.rawValue))

        public var description: String {
            var names: [String] = []
            if contains(.readable) { names.append("readable") }
            if contains(.writable) { names.append("writable") }
            if contains(.hangUp) { names.append("hangUp") }
            if contains(.error) { names.append("error") }
            if contains(.readHangUp) { names.append("readHangUp") }
            return "[" + names.joined(separator: ", ") + "]"
        }
    }

    /// The epoll descriptor itself (to nest in another loop, or to count).
    public let fd: FileDescriptor
    private var eventBuffer: [UInt32]
    private var tokenBuffer: [UInt64]

    /// `epoll_create1(EPOLL_CLOEXEC)`.
    public init(maxEventsPerWait: Int = 64) throws {
        let raw = try retryingSystemCall("epoll_create1") { ivs_epoll_create() }
        fd = FileDescriptor(rawValue: raw)
        let capacity = max(1, min(maxEventsPerWait, 64))  // the shim copies at most 64
        eventBuffer = Array(repeating: 0, count: capacity)
        tokenBuffer = Array(repeating: 0, count: capacity)
    }

    private var closed = false

    /// Closes the epoll descriptor once; later calls (and deinit) do nothing, so its number is
    /// never closed twice after the kernel reused it.
    public func close() {
        guard !closed else { return }
        closed = true
        fd.closeQuietly()
    }

    deinit { close() }

    /// `EPOLL_CTL_ADD`.
    public func add(_ target: FileDescriptor, events: Events, token: UInt64) throws {
        _ = try retryingSystemCall("epoll_ctl(ADD)", detail: target.description) {
            ivs_epoll_ctl(fd.rawValue, EPOLL_CTL_ADD, target.rawValue, events.rawValue, token)
        }
    }

    /// `EPOLL_CTL_MOD`.
    public func modify(_ target: FileDescriptor, events: Events, token: UInt64) throws {
        _ = try retryingSystemCall("epoll_ctl(MOD)", detail: target.description) {
            ivs_epoll_ctl(fd.rawValue, EPOLL_CTL_MOD, target.rawValue, events.rawValue, token)
        }
    }

    /// `EPOLL_CTL_DEL`. (Closing a descriptor also removes it, once no duplicate is open.)
    public func remove(_ target: FileDescriptor) throws {
        _ = try retryingSystemCall("epoll_ctl(DEL)", detail: target.description) {
            ivs_epoll_ctl(fd.rawValue, EPOLL_CTL_DEL, target.rawValue, 0, 0)
        }
    }

    /// Waits at most `timeoutMilliseconds` (-1: forever, 0: just look) and calls `body` with
    /// each ready token and its events. Returns how many were ready (0 on timeout).
    /// A signal interrupting the wait restarts it.
    @discardableResult
    public func wait(timeoutMilliseconds: Int32, _ body: (_ token: UInt64, _ events: Events) throws -> Void) throws -> Int {
        let capacity = Int32(eventBuffer.count)
        let count = try eventBuffer.withUnsafeMutableBufferPointer { events in
            try tokenBuffer.withUnsafeMutableBufferPointer { tokens in
                try retryingSystemCall("epoll_wait", detail: fd.description) {
                    ivs_epoll_wait(fd.rawValue, events.baseAddress, tokens.baseAddress, capacity, timeoutMilliseconds)
                }
            }
        }
        let n = Int(count)
        for i in 0..<n {
            try body(tokenBuffer[i], Events(rawValue: eventBuffer[i]))
        }
        return n
    }
}
