import IvshmemPosix
import IvshmemSync
import IvshmemWire

/// A v1 server link (spec/ivshmem1.md §6) without a device: the introduction read to its end
/// (V1-WIRE-CLI-8), the shared memory mapped, doorbells through the peers' eventfds
/// (V1-REG-DB-1, V1-REG-DB-2), and a thread that reports events on the own eventfds and follows
/// joins and departures (V1-WIRE-CLI-7). `AttachedV1Device` composes it with the v1 device.
public final class V1Link: @unchecked Sendable {
    public let id: UInt16
    /// The whole shared memory (its size is the descriptor's, V1-SHM-SIZE-1).
    public let sharedMemory: MemoryMapping
    private let connection: Locked<V1ServerConnection>
    private let ownEventFDs: [EventFD]
    private let epoll: Epoll
    private let wake: EventFD
    private var thread: EventLoopThread?
    private let closed = Locked(false)

    private static let socketToken: UInt64 = 1_000_000
    private static let wakeToken: UInt64 = 1_000_001

    /// Connects to `path` and reads the introduction; `vectors` is the device's own count
    /// (V1-WIRE-CLI-5).
    public init(path: String, vectors: Int, timeout: Double = 10) throws {
        let connection = try V1ServerConnection(path: path, vectors: vectors)
        try connection.attach(timeout: timeout)
        guard let id = connection.ownID else { throw AttachError.serverClosed(during: "the v1 introduction") }
        self.id = id
        sharedMemory = try connection.mapSharedMemory()
        ownEventFDs = (0..<vectors).compactMap { connection.ownEventFD(vector: $0) }
        epoll = try Epoll(maxEventsPerWait: 16)
        wake = try EventFD.create(nonBlocking: true)
        try epoll.add(connection.socket, events: [.readable, .readHangUp], token: Self.socketToken)
        try epoll.add(wake.fd, events: .readable, token: Self.wakeToken)
        for (vector, fd) in ownEventFDs.enumerated() { try epoll.add(fd.fd, events: .readable, token: UInt64(vector)) }
        self.connection = Locked(connection)
    }

    deinit { close() }

    /// Starts the thread; `onEvent(vector)` runs on it for each event on the own eventfds.
    public func start(onEvent: @escaping @Sendable (Int) -> Void) throws {
        thread = try EventLoopThread(name: "ivshmem-v1-\(id)") { [self] in self.runLoop(onEvent) }
    }

    /// Signals peer `target`'s eventfd for `vector`; false when none is held.
    public func ring(target: UInt16, vector: Int) -> Bool {
        connection.withLock { (try? $0.ring(peer: target, vector: vector)) ?? false }
    }

    /// The peers with eventfds, own ID included.
    public var knownPeers: [UInt16] { connection.withLock { $0.introduction.knownPeers } }
    /// Messages refused after attach (V1-WIRE-CLI-3 … V1-WIRE-CLI-6).
    public var protocolErrors: [V1WireError] { connection.withLock { $0.errors } }
    /// Whether the server closed the connection.
    public var serverGone: Bool { connection.withLock { $0.hungUp } }

    /// Leaves the server and stops the thread; safe to call more than once.
    public func close() {
        let wasClosed = closed.withLock { c -> Bool in
            defer { c = true }
            return c
        }
        if wasClosed { return }
        try? wake.signal()
        if let thread, !thread.isCurrent { thread.join() }
        thread = nil
        connection.withLock { $0.close() }
        wake.close()
    }

    private func runLoop(_ onEvent: @Sendable (Int) -> Void) {
        var running = true
        while running {
            do {
                _ = try epoll.wait(timeoutMilliseconds: -1) { token, _ in
                    switch token {
                    case Self.wakeToken:
                        running = false
                    case Self.socketToken:
                        let gone = connection.withLock { c -> Bool in
                            try? c.readAvailable()
                            return c.hungUp
                        }
                        if gone { try? epoll.remove(connection.withLock { $0.socket }) }
                    default:
                        let vector = Int(token)
                        if vector < ownEventFDs.count, (try? ownEventFDs[vector].tryConsume()) ?? nil != nil { onEvent(vector) }
                    }
                }
            } catch {
                running = false
            }
            if closed.withLock({ $0 }) { running = false }
        }
    }
}
