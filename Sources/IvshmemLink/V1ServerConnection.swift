import IvshmemPosix
import IvshmemWire

/// A client of a v1 server (spec/ivshmem1.md §6), used by our v1 device and as an independent
/// v1 peer in tests: connects, reads each 8-byte message with its descriptor
/// (V1-WIRE-GEN-1), interprets it with ``V1Introduction`` and keeps the shared memory and every
/// peer's eventfds. A message the device refuses after the set-up is recorded in ``errors``
/// and its descriptor closed (V1-WIRE-CLI-3 … V1-WIRE-CLI-6); the link goes on.
///
/// Not thread-safe: one thread drives it.
public final class V1ServerConnection {
    /// One message as it arrived.
    public struct Received: Equatable, Sendable, CustomStringConvertible {
        public var value: Int64
        public var hadDescriptor: Bool
        public init(value: Int64, hadDescriptor: Bool) {
            self.value = value
            self.hadDescriptor = hadDescriptor
        }
        public var description: String { "\(value)\(hadDescriptor ? "+fd" : "")" }
    }

    public let socket: FileDescriptor
    public private(set) var introduction: V1Introduction
    /// Every message received, in order.
    public private(set) var received: [Received] = []
    /// What each message meant, in order (refused ones are in ``errors`` instead).
    public private(set) var events: [V1Introduction.Event] = []
    /// Messages refused after the set-up.
    public private(set) var errors: [V1WireError] = []
    /// The shared-memory descriptor (V1-WIRE-SEQ-3).
    public private(set) var sharedMemory: FileDescriptor?
    /// Each peer's eventfds by vector (own ID included).
    public private(set) var eventFDs: [UInt16: [EventFD]] = [:]
    /// Whether the server closed the connection.
    public private(set) var hungUp = false
    private var partial: [UInt8] = []
    private var partialFDs: [FileDescriptor] = []
    private var closed = false
    private var leftSocket = false

    /// Connects to `path`; `vectors` is the device's own vector count (V1-WIRE-CLI-5).
    public init(path: String, vectors: Int) throws {
        do {
            socket = try UnixSocket.connect(path: path)
        } catch let error as SystemCallError {
            throw AttachError.connect(path: path, error)
        }
        introduction = V1Introduction(vectors: vectors)
    }

    deinit { close() }

    /// The ID the server gave, once known.
    public var ownID: UInt16? { introduction.ownID }

    /// Reads until the introduction is complete (V1-WIRE-CLI-8). A refused version or ID
    /// message (V1-WIRE-CLI-1, V1-WIRE-CLI-2) or the server closing throws.
    public func attach(timeout: Double = 10) throws {
        let deadline = Monotonic.now() + timeout
        while !introduction.isComplete {
            if received.count < 2, let first = errors.first {
                throw V1AttachError.refused(first)
            }
            guard !hungUp else { throw AttachError.serverClosed(during: "reading the v1 introduction (\(received.count) messages: \(received))") }
            let left = deadline - Monotonic.now()
            guard left > 0, try socket.waitReadable(timeoutMilliseconds: Int32(left * 1000) + 1) else {
                throw AttachError.timeout(during: "waiting for the v1 introduction (\(received.count) messages so far: \(received))", seconds: timeout)
            }
            try readOnce()
        }
    }

    /// Reads until `count` more messages arrived; false on timeout or hang-up.
    @discardableResult
    public func receive(_ count: Int, timeout: Double = 10) throws -> Bool {
        let target = received.count + count
        return try receive(until: { $0.received.count >= target }, timeout: timeout)
    }

    /// Reads until `condition` holds; false on timeout or hang-up.
    public func receive(until condition: (V1ServerConnection) -> Bool, timeout: Double = 10) throws -> Bool {
        let deadline = Monotonic.now() + timeout
        while !condition(self) {
            guard !hungUp else { return false }
            let left = deadline - Monotonic.now()
            guard left > 0, try socket.waitReadable(timeoutMilliseconds: Int32(left * 1000) + 1) else { return false }
            try readOnce()
        }
        return true
    }

    /// Reads whatever the socket holds now, without waiting (for an event loop).
    public func readAvailable() throws {
        while !hungUp, try socket.waitReadable(timeoutMilliseconds: 0) {
            try readOnce()
        }
    }

    /// Waits until the server closes the connection.
    public func waitForHangUp(timeout: Double = 10) throws -> Bool {
        try receive(until: { $0.hungUp }, timeout: timeout)
    }

    /// Signals peer `id`'s eventfd for `vector`: what a Doorbell write does (V1-REG-DB-1). False
    /// when no such eventfd is held (V1-REG-DB-2).
    @discardableResult
    public func ring(peer id: UInt16, vector: Int) throws -> Bool {
        guard let fds = eventFDs[id], vector < fds.count else { return false }
        try fds[vector].signal()
        return true
    }

    /// The own eventfd for `vector`, to wait on.
    public func ownEventFD(vector: Int) -> EventFD? {
        guard let id = ownID, let fds = eventFDs[id], vector < fds.count else { return nil }
        return fds[vector]
    }

    /// Maps the whole shared memory (its size is the descriptor's, V1-SHM-SIZE-1).
    public func mapSharedMemory() throws -> MemoryMapping {
        guard let fd = sharedMemory else { throw AttachError.missingSharedMemory }
        return try MemoryMapping(fd: fd, size: try fd.size())
    }

    /// Sends one byte: a v1 server treats any data as a departure (V1-SRV-GONE-1).
    public func sendGarbage() throws {
        _ = try UnixSocket.sendMessage(on: socket, bytes: [0x42])
    }

    /// Leaves the server (closes the socket) but keeps the eventfds and the shared memory, so
    /// that a test can see that nobody rings a departed peer any more (V1-WIRE-CLI-7).
    public func leave() {
        guard !closed else { return }
        socket.closeQuietly()
        hungUp = true
        leftSocket = true
    }

    /// Closes the socket and every descriptor received.
    public func close() {
        guard !closed else { return }
        closed = true
        if !leftSocket { socket.closeQuietly() }
        sharedMemory?.closeQuietly()
        sharedMemory = nil
        for (_, fds) in eventFDs { for fd in fds { fd.close() } }
        eventFDs = [:]
        for fd in partialFDs { fd.closeQuietly() }
        partialFDs = []
    }

    /// One `recvmsg` of at most the rest of the current 8-byte message, so that a descriptor
    /// stays with its own message.
    private func readOnce() throws {
        let message: ReceivedMessage
        do {
            message = try UnixSocket.receiveMessage(on: socket, maxBytes: V1Message.size - partial.count, maxFDs: 4)
        } catch let error as SystemCallError where error.errno == .connectionReset {
            hungUp = true
            return
        }
        if message.bytes.isEmpty {
            for fd in message.fds { fd.closeQuietly() }
            hungUp = true
            return
        }
        partial += message.bytes
        partialFDs += message.fds
        guard partial.count == V1Message.size else { return }
        let value = try V1Message.decode(partial)
        let fds = partialFDs
        partial = []
        partialFDs = []
        // More than one descriptor with one message: keep the first, as QEMU does.
        for extra in fds.dropFirst() { extra.closeQuietly() }
        handle(value, descriptor: fds.first)
    }

    private func handle(_ value: Int64, descriptor: FileDescriptor?) {
        received.append(Received(value: value, hadDescriptor: descriptor != nil))
        let event: V1Introduction.Event
        do {
            event = try introduction.consume(value, withDescriptor: descriptor != nil)
        } catch {
            errors.append(error)
            descriptor?.closeQuietly()
            return
        }
        events.append(event)
        switch event {
        case .version, .ownID:
            break
        case .sharedMemory:
            sharedMemory = descriptor
        case .eventFD(let id, _):
            if let descriptor { eventFDs[id, default: []].append(EventFD(fd: descriptor)) }
        case .peerGone(let id):
            for fd in eventFDs.removeValue(forKey: id) ?? [] { fd.close() }
        }
    }
}

/// A v1 introduction the device refuses (V1-WIRE-CLI-1, V1-WIRE-CLI-2).
public enum V1AttachError: Error, CustomStringConvertible, Sendable {
    case refused(V1WireError)
    public var description: String {
        switch self {
        case .refused(let error): return "v1 attach refused: \(error)"
        }
    }
}
