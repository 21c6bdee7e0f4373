#if canImport(Glibc)
import Glibc
#endif
import IvshmemPosix
import IvshmemSpec
import IvshmemWire
import Logging
import IvshmemSync

/// The ivshmem v2 server (spec §12): hands every peer the shared memory and every other
/// peer's eventfds, with the reference server's messages in the reference server's order
/// (SRV-REF-1), and without its fragility (SRV-ID-2, SRV-IO-1, SRV-IO-3, SRV-SHM-2).
///
/// Create it (which opens the memory and binds the socket, so every start-up error is thrown
/// here), then call ``run()`` on one thread; ``stop()`` is the only call safe from another
/// thread or after a signal. ``ServerThread`` runs it in the background for embedding.
public final class IvshmemServer: @unchecked Sendable {
    public let configuration: ServerConfiguration
    /// The layout every device derives from INIT and the memory's size (SRV-CFG-3); nil for a
    /// v1 server, whose memory is flat (V1-SHM-BAR-1).
    public let geometry: SharedMemoryGeometry?
    var logger: Logger

    let sharedMemory: ServerSharedMemory
    let listener: FileDescriptor
    /// Held while the server runs: tells a second server the socket is taken (SRV-SOCK-1).
    private let socketLock: FileDescriptor
    private let socketLockPath: String
    let epoll: Epoll
    /// Written by ``stop()`` and by the termination signal handler.
    let wake: EventFD
    /// Kept open so that, at the descriptor limit, a pending connection can still be
    /// accepted and closed instead of spinning in epoll.
    var spareDescriptor: FileDescriptor?

    var ids: PeerIDAllocator
    /// Peers in connection order (WIRE-SEQ-5).
    var peers: [Peer] = []
    var peersBySerial: [UInt64: Peer] = [:]
    var nextSerial: UInt64 = firstPeerToken
    /// Peers with queued messages to try to send.
    var dirty: [Peer] = []
    /// Peers to free once the current event is handled.
    var departures: [(Peer, String)] = []
    /// Peers waiting for in-flight descriptors to drain (ETOOMANYREFS).
    var retryLater: [Peer] = []

    let lifecycle = Locked(Lifecycle())
    private let published = Locked(PublishedState())

    static let listenerToken: UInt64 = 0
    static let wakeToken: UInt64 = 1
    static let firstPeerToken: UInt64 = 2

    struct Lifecycle {
        var stopRequested = false
        var watchesSignals = false
        var closed = false
    }

    struct PublishedState {
        var peerIDs: [UInt32] = []
        var accepted = 0
        var refused = 0
        var departed = 0
    }

    /// Validates the configuration (SRV-CFG-2), creates or opens the shared memory and zeroes
    /// its State Table (SRV-SHM-1, SRV-SHM-2), and binds the socket (SRV-SOCK-1, SRV-SOCK-2).
    public init(configuration: ServerConfiguration, logger: Logger = Logger(label: "ivshmem2.server")) throws {
        self.configuration = configuration
        self.logger = logger
        geometry = try configuration.validate()
        ids = PeerIDAllocator(capacity: UInt32(configuration.maxPeers), policy: configuration.dialect == .v1 ? .inTurn : .lowestFree)

        let memory = try ServerSharedMemory(backing: configuration.backing, size: Int(configuration.size), geometry: geometry, mode: configuration.mode)
        var cleanup: [() -> Void] = []
        if let name = memory.posixName { cleanup.append { try? SharedMemory.unlinkNamed(name) } }
        do {
            epoll = try Epoll(maxEventsPerWait: 64)
            wake = try EventFD.create(nonBlocking: true)
            cleanup.append { [wake] in wake.close() }
            let bound = try ListeningSocket.open(path: configuration.socketPath, mode: configuration.mode, backlog: configuration.backlog, logger: logger)
            listener = bound.listener
            socketLock = bound.lock
            socketLockPath = bound.lockPath
            cleanup.append { [bound, path = configuration.socketPath] in
                bound.listener.closeQuietly()
                try? FileSystem.unlinkIfPresent(path)
                try? FileSystem.unlinkIfPresent(bound.lockPath)
                bound.lock.closeQuietly()
            }
            try epoll.add(listener, events: .readable, token: Self.listenerToken)
            try epoll.add(wake.fd, events: .readable, token: Self.wakeToken)
        } catch {
            for step in cleanup.reversed() { step() }
            throw error
        }
        sharedMemory = memory
        spareDescriptor = try? FileDescriptor.open("/dev/null", flags: O_RDONLY)
        logger.info("listening", metadata: [
            "socket": "\(configuration.socketPath)",
            "shm": "\(configuration.backing)",
            "size": "\(configuration.size)",
            "maxPeers": "\(configuration.maxPeers)",
            "vectors": "\(configuration.vectors)",
            "protocol": configuration.dialect == .v1 ? "v1" : "0x\(String(configuration.protocolValue, radix: 16))",
            "layout": "\(geometry.map { "\($0)" } ?? "flat (v1)")",
        ])
    }

    deinit {
        closeEverything()
    }

    // MARK: Control (thread-safe)

    /// Asks a running ``run()`` to shut down; safe from any thread, and after shutdown.
    public func stop() {
        lifecycle.withLock { state in
            state.stopRequested = true
            if !state.closed { try? wake.signal() }
        }
    }

    /// The wake eventfd a termination signal handler should signal (the CLI installs one).
    public var wakeEvent: EventFD { wake }

    /// The ids of the connected peers in connection order, as of the last handled event.
    public var connectedPeerIDs: [UInt32] { published.withLock { $0.peerIDs } }

    /// Connections accepted, refused (server full, SRV-ID-2), and peers departed so far.
    public var counters: (accepted: Int, refused: Int, departed: Int) {
        published.withLock { ($0.accepted, $0.refused, $0.departed) }
    }

    // MARK: The loop

    /// Runs the event loop until ``stop()`` (or a termination signal through ``wakeEvent``),
    /// then shuts down: every peer socket closed, the socket file and a named shared-memory
    /// object unlinked (SRV-SIG-1). Errors of single peers never end it (SRV-IO-3).
    public func run() throws {
        defer { shutdown() }
        while !lifecycle.withLock({ $0.stopRequested }) {
            let timeout: Int32 = retryLater.isEmpty ? -1 : 10
            var connectionsPending = false
            try epoll.wait(timeoutMilliseconds: timeout) { token, events in
                switch token {
                case Self.listenerToken:
                    connectionsPending = true
                case Self.wakeToken:
                    _ = try? wake.consume()
                    lifecycle.withLock { state in
                        if state.watchesSignals && Signals.terminationRequested { state.stopRequested = true }
                    }
                default:
                    handle(events, forPeerToken: token)
                }
            }
            if !retryLater.isEmpty {
                dirty.append(contentsOf: retryLater)
                retryLater.removeAll()
            }
            settle()
            // Accept only after the departures of the same wake-up are freed: a peer that
            // closes and at once reconnects (or a newcomer right behind a departure) finds
            // the departed peer's id free (SRV-ID-1) instead of a full server (SRV-ID-2),
            // whatever order epoll reported the hang-up and the connection in.
            if connectionsPending {
                acceptPending()
                settle()
            }
        }
    }

    /// Events on a peer socket: any data, hang-up or error frees the peer (SRV-GONE-1);
    /// writability resumes its queue.
    private func handle(_ events: Epoll.Events, forPeerToken token: UInt64) {
        guard let peer = peersBySerial[token], !peer.departing else { return }
        if !events.isDisjoint(with: [.readable, .hangUp, .error, .readHangUp]) {
            let reason: String
            if events.contains(.error) { reason = "socket error" }
            else if events.contains(.hangUp) || events.contains(.readHangUp) { reason = "hang-up" }
            else { reason = "peer sent data" }
            departures.append((peer, reason))
        } else if events.contains(.writable) {
            dirty.append(peer)
        }
    }

    /// Sends what can be sent and frees the peers that must go, until nothing is left to do
    /// (a departure queues PEER_GONE to others; a failed send makes a departure).
    func settle() {
        while !dirty.isEmpty || !departures.isEmpty {
            if !departures.isEmpty {
                let (peer, reason) = departures.removeFirst()
                free(peer, reason: reason)
                continue
            }
            let batch = dirty
            dirty.removeAll()
            var seen = Set<UInt64>()
            for peer in batch where !peer.departing && seen.insert(peer.serial).inserted {
                flush(peer)
            }
        }
        publish()
    }

    func publish() {
        let ids = peers.map(\.id)
        published.withLock { $0.peerIDs = ids }
    }

    func count(accepted: Int = 0, refused: Int = 0, departed: Int = 0) {
        published.withLock {
            $0.accepted += accepted
            $0.refused += refused
            $0.departed += departed
        }
    }

    // MARK: Shutdown

    /// Frees every peer in connection order (each remaining peer is sent PEER_GONE, as the
    /// reference does on close), closes their sockets, unlinks the socket file and a named
    /// shared-memory object (SRV-SIG-1). Idempotent.
    func shutdown() {
        let alreadyClosed = lifecycle.withLock { $0.closed }
        if alreadyClosed { return }
        logger.info("shutting down", metadata: ["peers": "\(peers.count)"])
        for peer in peers { departures.append((peer, "server shutting down")) }
        settle()
        closeEverything()
    }

    private func closeEverything() {
        let wasClosed = lifecycle.withLock { state -> Bool in
            let was = state.closed
            state.closed = true
            return was
        }
        if wasClosed { return }
        for peer in peers {
            peer.socket.closeQuietly()
            peer.queue.removeAll()
        }
        peers.removeAll()
        peersBySerial.removeAll()
        listener.closeQuietly()
        try? FileSystem.unlinkIfPresent(configuration.socketPath)
        try? FileSystem.unlinkIfPresent(socketLockPath)
        socketLock.closeQuietly()
        if let name = sharedMemory.posixName {
            do { try SharedMemory.unlinkNamed(name) } catch {
                logger.warning("could not unlink shared memory", metadata: ["name": "\(name)", "error": "\(error)"])
            }
        }
        Signals.forgetTerminationWake(wake)  // a no-op unless this server's wake is the installed one
        wake.close()
        spareDescriptor?.closeQuietly()
        spareDescriptor = nil
        publish()
    }
}

extension IvshmemServer {
    /// Makes SIGTERM, SIGINT and SIGHUP stop this server in order (SRV-SIG-1). Process-wide:
    /// for a program that runs one server (the CLI), not for an embedding test.
    public func installTerminationSignalHandler() throws {
        try Signals.installTerminationHandler(wake: wake)
        lifecycle.withLock { $0.watchesSignals = true }
    }
}
