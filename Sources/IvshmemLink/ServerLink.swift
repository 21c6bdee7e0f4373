import IvshmemPosix
import IvshmemSpec
import IvshmemSync
import IvshmemWire
import Synchronization

/// How the event loop waits for the next event.
public enum WaitMode: Sendable, Equatable {
    /// Sleep in epoll_wait until something happens (the default).
    case blocking
    /// Poll without sleeping for up to `microseconds` before sleeping: trades a busy CPU for
    /// latency below the cross-CPU wake-up cost.
    case spinThenBlock(microseconds: Int)
}

/// Who hears what arrives on the link. Called on the event-loop thread (and, during
/// ``ServerLink/readIntroduction(deadline:timeout:)``, on the attaching thread).
public protocol ServerLinkDelegate: AnyObject, Sendable {
    /// One of this peer's own eventfds fired: one event, however many signals piled up
    /// (IRQ-COAL-2).
    func linkReceivedEvent(vector: Int)
    /// PEER_GONE for `id` (its eventfds are closed already).
    func linkPeerDeparted(_ id: UInt32)
}

/// A peer's eventfd for one vector, closed when the last holder lets go: a doorbell takes it
/// out of the table under the lock and writes it after releasing the lock, and a concurrent
/// PEER_GONE cannot close the descriptor (and let its number be reused) under that write.
final class PeerVector: Sendable {
    let eventFD: EventFD
    init(_ e: EventFD) { eventFD = e }
    deinit { eventFD.close() }
}

/// The device's side of a server connection: connects, reads INIT, holds every peer's
/// eventfds, reads EVENT_FD and PEER_GONE (WIRE-CLI-11…18), turns increments on this peer's
/// own eventfds into events for its delegate, and signals other peers' eventfds. It knows wire
/// messages and descriptors only, nothing of the device model.
///
/// Threads and ownership:
/// - An event-loop thread (``start(name:)``) owns the socket reader and this peer's own
///   eventfds (fixed once the introduction is complete: read without a lock) and calls the
///   delegate. It holds the link while it runs; ``close()`` stops it.
/// - ``signal(peer:vector:)`` and ``broadcast(from:)`` run on whichever thread rings: one short
///   lock to take the target's ``PeerVector``, the eventfd write outside every lock.
/// - Flags read on every event (closed, barrier tickets) are atomics.
public final class ServerLink: @unchecked Sendable {
    public let info: InitialInfo
    public var ownID: UInt32 { info.id }
    public var vectors: Int { Int(info.vectors) }
    let socket: FileDescriptor
    private let epoll: Epoll
    private let wake: EventFD
    private let waitMode: WaitMode
    private var thread: EventLoopThread?
    private var delegate: (any ServerLinkDelegate)?
    /// This peer's own eventfds in vector order; set before the loop starts, then only read.
    private var own: [PeerVector] = []

    /// How many link events are kept (older ones are counted, not kept): a server that floods
    /// the device with bad messages costs bounded memory.
    public static let eventCapacity = 4096

    private struct LinkState {
        /// Eventfds per peer in vector order; the own ID's are this device's interrupt sources.
        var peers: [UInt32: [PeerVector]] = [:]
        var linkUp = true
        /// close() ran on the loop thread (from a handler): the loop releases the descriptors.
        var releaseLeftToLoop = false
        var events = BoundedLog<LinkEvent>(capacity: ServerLink.eventCapacity)
        var handler: (@Sendable (LinkEvent) -> Void)?
        var reader = MessageReader()
        var pendingFDs: [FileDescriptor] = []
    }
    private let state = Locked(LinkState())
    private let closed = Atomic<Bool>(false)
    private let droppedCount = Atomic<Int>(0)
    /// Barrier tickets: requested by ``settle``, seen and completed by the loop (see there).
    private let barrierRequested = Atomic<Int>(0)
    private let barrierSeen = Atomic<Int>(0)
    private let barrierCompleted = Atomic<Int>(0)

    private static let socketToken: UInt64 = .max
    private static let wakeToken: UInt64 = .max - 1

    private init(info: InitialInfo, socket: FileDescriptor, epoll: Epoll, wake: EventFD, waitMode: WaitMode) throws {
        self.info = info
        self.socket = socket
        self.epoll = epoll
        self.wake = wake
        self.waitMode = waitMode
        try epoll.add(socket, events: [.readable, .readHangUp], token: Self.socketToken)
        try epoll.add(wake.fd, events: .readable, token: Self.wakeToken)
    }

    // MARK: connecting (WIRE-CLI-1…10)

    /// Connects to the server at `socketPath` and reads INIT. Returns the link (not yet
    /// introduced, not yet running), INIT's values, and the shared-memory descriptor, which
    /// the caller owns. Every other descriptor is closed on failure.
    public static func connect(socketPath: String, waitMode: WaitMode, deadline: Double, timeout: Double) throws -> (ServerLink, InitialInfo, FileDescriptor) {
        let socket: FileDescriptor
        do { socket = try UnixSocket.connect(path: socketPath) } catch let e as SystemCallError {
            throw AttachError.connect(path: socketPath, e)
        }
        var keep: [FileDescriptor] = [socket]
        do {
            let msg = try BlockingMessageRead.read(from: socket, during: "reading INIT", deadline: deadline, timeout: timeout)
            var fds = msg.fds
            defer { for fd in fds { fd.closeQuietly() } }
            let info: InitialInfo
            do { info = try WireMessage.decodeInitial(header: msg.header, body: msg.body) } catch {
                throw AttachError.wire(error, during: "reading INIT")
            }
            guard let shmFD = fds.first else { throw AttachError.missingSharedMemory }
            fds.removeFirst()  // the rest (if any) are unexpected and closed by the defer (WIRE-CLI-18)
            keep.append(shmFD)
            let link: ServerLink
            do {
                let epoll = try Epoll()  // closes itself if this fails
                let wake = try EventFD.create(nonBlocking: true)
                keep.append(wake.fd)
                try socket.setNonBlocking(true)
                link = try ServerLink(info: info, socket: socket, epoll: epoll, wake: wake, waitMode: waitMode)
            } catch let e as SystemCallError {
                throw AttachError.system(e, during: "setting up the event loop")
            }
            return (link, info, shmFD)
        } catch {
            for fd in keep { fd.closeQuietly() }
            throw error
        }
    }

    // MARK: introduction (WIRE-CLI-20)

    /// Reads what the server sends after INIT until this peer's own eventfds for every vector
    /// have arrived: the last step of the server's introduction (WIRE-SEQ-4), after the
    /// eventfds of every peer already connected (WIRE-SEQ-3). Until this returns nothing the
    /// device does can be lost: a doorbell to a peer the server is still introducing, or a
    /// state change those peers would not be told about (WIRE-CLI-20).
    ///
    /// Every message is handled exactly as the event loop handles it later.
    public func readIntroduction(delegate: any ServerLinkDelegate, deadline: Double, timeout: Double) throws {
        self.delegate = delegate
        let what = "waiting for the server's introduction"
        while ownVectorCount < vectors {
            let message: BlockingMessageRead
            do {
                message = try BlockingMessageRead.read(from: socket, during: what, deadline: deadline, timeout: timeout)
            } catch AttachError.timeout(_, let seconds) {
                // Described only now: building it per message costs O(peers) each time.
                throw AttachError.timeout(during: "\(what) (\(introductionProgress))", seconds: seconds)
            } catch AttachError.serverClosed {
                throw AttachError.serverClosed(during: "\(what) (\(introductionProgress))")
            }
            state.withLock { $0.pendingFDs += message.fds }
            handle(MessageReader.Frame(header: message.header, body: message.body))
        }
    }

    private var ownVectorCount: Int { state.withLock { $0.peers[ownID]?.count ?? 0 } }

    /// What has arrived of the introduction, for a timeout's error message.
    private var introductionProgress: String {
        let (mine, others) = state.withLock { s in
            (s.peers[ownID]?.count ?? 0, s.peers.filter { $0.key != ownID }.map { "\($0.key)×\($0.value.count)" }.sorted())
        }
        return "own eventfds: \(mine) of \(vectors); other peers' eventfds: " + (others.isEmpty ? "none" : others.joined(separator: " "))
    }

    // MARK: lifecycle

    /// Starts the event loop (after the introduction: the own eventfds are fixed from here on).
    public func start(name: String) throws {
        own = state.withLock { $0.peers[ownID] ?? [] }
        do {
            thread = try EventLoopThread(name: name) { [self] in self.runLoop() }
        } catch let e as SystemCallError {
            throw AttachError.system(e, during: "starting the event loop")
        }
    }

    /// Releases everything after a failed attach (no thread was started, or it never ran).
    public func releaseAfterFailedAttach() {
        guard closed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        releaseResources()
    }

    /// Detaches: the server sees the hang-up and announces our departure to the others. Closes
    /// every fd this link holds. Idempotent.
    public func close() {
        guard closed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        try? wake.signal()
        if let t = thread, t.isCurrent {
            // Called from an interrupt or link-event handler on the loop thread: the loop
            // releases everything when it returns, after this handler.
            state.withLock { $0.releaseLeftToLoop = true }
            return
        }
        thread?.join()
        thread = nil
        releaseResources()
    }

    private var isClosed: Bool { closed.load(ordering: .acquiring) }

    /// Closes every descriptor the link holds. Runs once, after the event loop stopped. An
    /// eventfd a ringing thread still holds closes when that thread lets go of it.
    private func releaseResources() {
        own = []
        let (peers, pending) = state.withLock { s -> ([UInt32: [PeerVector]], [FileDescriptor]) in
            defer {
                s.peers.removeAll()
                s.pendingFDs.removeAll()
            }
            return (s.peers, s.pendingFDs)
        }
        _ = peers  // released here, outside the lock
        for fd in pending { fd.closeQuietly() }
        socket.closeQuietly()
        wake.close()
        epoll.close()
    }

    // MARK: observing the link

    public var isLinkUp: Bool { !isClosed && state.withLock { $0.linkUp } }
    public var linkEvents: [LinkEvent] { state.withLock { $0.events.elements } }
    public var droppedLinkEvents: Int { state.withLock { $0.events.dropped } }
    /// Doorbells and state-change signals dropped because a peer's eventfd was full (WIRE-CLI-21).
    public var droppedSignals: Int { droppedCount.load(ordering: .relaxed) }
    public func onLinkEvent(_ handler: (@Sendable (LinkEvent) -> Void)?) { state.withLock { $0.handler = handler } }
    /// Peers whose vector-0 eventfd is known (the own ID included once its eventfds arrived).
    public var activePeers: [UInt32] { state.withLock { $0.peers.filter { !$0.value.isEmpty }.keys.sorted() } }
    public func heldEventFDs(peer: UInt32) -> [FileDescriptor] { state.withLock { ($0.peers[peer] ?? []).map(\.eventFD.fd) } }
    /// Peers whose eventfds for every vector are known: fully introduced (WIRE-SEQ-2, -3).
    public var introducedPeers: [UInt32] {
        let v = vectors
        return state.withLock { $0.peers.filter { $0.value.count >= v }.keys.sorted() }
    }
    public func isActive(_ peer: UInt32) -> Bool { state.withLock { !($0.peers[peer]?.isEmpty ?? true) } }

    // MARK: barrier

    /// Waits until the event loop has handled everything that was readable when this was
    /// called: every increment already written to this peer's own eventfds and every message
    /// the server had already sent. The loop sees the request on its wake fd and completes it
    /// at the end of that epoll batch, and epoll (level-triggered) reports in one batch every
    /// descriptor readable at that moment. Tests use it to say "nothing else happened" without
    /// sleeping. Returns false on timeout, when the link is closed, or when called from a
    /// handler on the loop thread itself.
    public func settle(timeout: Double) -> Bool {
        // From a handler on the loop thread the loop cannot complete the barrier: refuse.
        if thread?.isCurrent == true || isClosed { return false }
        let ticket = barrierRequested.add(1, ordering: .acquiringAndReleasing).newValue
        try? wake.signal()
        return Monotonic.poll(timeout: timeout, interval: 0.0005) {
            barrierCompleted.load(ordering: .acquiring) >= ticket || isClosed
        } && !isClosed
    }

    // MARK: signalling other peers

    /// Signals `vector` of peer `target`: one short lock to take the eventfd, the write after
    /// releasing it, never blocking (WIRE-CLI-21).
    public func signal(peer target: UInt32, vector: UInt32) -> DoorbellOutcome {
        let v = vectors  // every peer has V vectors (IRQ-VEC-1)
        enum Lookup { case fd(PeerVector), outcome(DoorbellOutcome) }
        let found = state.withLock { s -> Lookup in
            guard s.linkUp || s.peers[target] != nil else { return .outcome(.linkDown) }
            guard let fds = s.peers[target], !fds.isEmpty else { return .outcome(.inactiveTarget) }
            guard Int(vector) < v else { return .outcome(.noSuchVector(targetVectors: v)) }
            guard Int(vector) < fds.count else { return .outcome(.notYetAnnounced) }
            return .fd(fds[Int(vector)])
        }
        switch found {
        case .outcome(let o): return o
        case .fd(let p): return write(p, peer: target, vector: vector)
        }
    }

    /// Signals vector 0 of every peer but `source` (IRQ-STATE-1). Returns why each signal that
    /// could not be delivered was dropped.
    public func broadcast(from source: UInt32) -> [String] {
        let targets = state.withLock { s in
            s.peers.compactMap { id, fds in id != source ? fds.first.map { (id, $0) } : nil }
        }
        var why: [String] = []
        for (id, p) in targets.sorted(by: { $0.0 < $1.0 }) {
            switch write(p, peer: id, vector: 0) {
            case .dropped(let m), .failed(let m): why.append(m)
            default: break
            }
        }
        return why
    }

    /// Writes one eventfd without ever blocking (WIRE-CLI-21); counts what could not be sent.
    private func write(_ p: PeerVector, peer: UInt32, vector: UInt32) -> DoorbellOutcome {
        do {
            if try p.eventFD.trySignal() { return .delivered }
            droppedCount.add(1, ordering: .relaxed)
            return .dropped("peer \(peer)'s eventfd for vector \(vector) is full or not writable (it stopped reading)")
        } catch {
            droppedCount.add(1, ordering: .relaxed)
            return .failed("signalling peer \(peer) vector \(vector): \(error)")
        }
    }

    // MARK: event loop

    private func runLoop() {
        defer {
            // close() called from a handler on this thread left the teardown to us (and only
            // then: a close() from another thread releases after joining this one — releasing
            // here too closed every descriptor twice, and under concurrent links the second
            // close hit descriptors other links had been given meanwhile).
            if state.withLock({ $0.releaseLeftToLoop }) { releaseResources() }
        }
        while !isClosed {
            if case .spinThenBlock(let us) = waitMode {
                spin(microseconds: us)
                if isClosed { return }
            }
            do {
                _ = try epoll.wait(timeoutMilliseconds: -1, dispatch)
            } catch {
                linkDown("event loop failed: \(error)")
                return
            }
            completeBarriers()
        }
    }

    /// The batch that saw the wake fd is done: the barriers requested before it are complete.
    private func completeBarriers() {
        let seen = barrierSeen.load(ordering: .relaxed)
        if seen > barrierCompleted.load(ordering: .relaxed) { barrierCompleted.store(seen, ordering: .releasing) }
    }

    private func dispatch(_ token: UInt64, _ events: Epoll.Events) {
        if isClosed { return }  // a handler closed the link in this batch
        switch token {
        case Self.wakeToken:
            _ = try? wake.consume()
            barrierSeen.store(barrierRequested.load(ordering: .acquiring), ordering: .relaxed)
        case Self.socketToken: serviceSocket(events)
        default: serviceOwnEventFD(vector: Int(token))
        }
    }

    /// Spin phase of `.spinThenBlock`: read our own eventfds directly (one non-blocking read
    /// each, like a C busy-poll) for up to `microseconds` after the last event, looking at the
    /// socket and the wake fd with a zero-timeout epoll every 64 rounds.
    private func spin(microseconds: Int) {
        let window = Double(microseconds) / 1e6
        var deadline = Monotonic.now() + window
        var round = 0
        while round & 15 != 0 || Monotonic.now() < deadline {  // the clock every 16 rounds
            var got = false
            for vector in own.indices {
                if let n = try? own[vector].eventFD.tryConsume(), n > 0 {
                    delegate?.linkReceivedEvent(vector: vector)
                    got = true
                }
            }
            round &+= 1
            if round & 63 == 0 {
                _ = try? epoll.wait(timeoutMilliseconds: 0, dispatch)
                completeBarriers()
                if isClosed { return }
            }
            if got { deadline = Monotonic.now() + window }
        }
    }

    /// Own eventfd `vector` fired: however many signals piled up, it is one event (IRQ-COAL-2).
    /// No lock: the own eventfds are fixed while the loop runs.
    private func serviceOwnEventFD(vector: Int) {
        guard vector < own.count else { return }
        let fd = own[vector].eventFD
        do {
            guard let count = try fd.tryConsume(), count > 0 else { return }
            delegate?.linkReceivedEvent(vector: vector)
        } catch {
            // Unreadable after all: stop watching it rather than spinning on a descriptor
            // that stays readable.
            try? epoll.remove(fd.fd)
            report(.protocolError("own eventfd for vector \(vector) is unusable (\(error)); no longer watched"))
        }
    }

    private func serviceSocket(_ events: Epoll.Events) {
        while !isClosed {
            let wanted = state.withLock { $0.reader.bytesWanted }
            let m: ReceivedMessage
            do {
                m = try UnixSocket.receiveMessage(on: socket, maxBytes: max(wanted, 1), maxFDs: 4)
            } catch let e as SystemCallError where e.errno == .wouldBlock {
                return
            } catch {
                linkDown("reading from the server failed: \(error)")
                return
            }
            if m.controlTruncated { report(.protocolError("server attached more descriptors than a message carries; they were closed (WIRE-CLI-18)")) }
            if m.bytes.isEmpty {
                for fd in m.fds { fd.closeQuietly() }
                linkDown("server closed the connection")
                return
            }
            let frame: MessageReader.Frame?
            do {
                frame = try state.withLock { s in
                    s.pendingFDs += m.fds
                    return try s.reader.consume(m.bytes)
                }
            } catch {
                // The stream cannot be re-synchronised after a bad header: treat as link down.
                dropPendingFDs()
                linkDown("unreadable message from server: \(error)")
                return
            }
            if let frame { handle(frame) }
        }
    }

    private func dropPendingFDs() {
        let fds = state.withLock { s -> [FileDescriptor] in
            defer { s.pendingFDs.removeAll() }
            return s.pendingFDs
        }
        for fd in fds { fd.closeQuietly() }
    }

    private func handle(_ frame: MessageReader.Frame) {
        var fds = state.withLock { s -> [FileDescriptor] in
            defer { s.pendingFDs.removeAll() }
            return s.pendingFDs
        }
        defer { for fd in fds { fd.closeQuietly() } }  // whatever is not taken below (WIRE-CLI-17, -18)
        let message: WireMessage
        do { message = try frame.decode(initial: false) } catch {
            report(.protocolError("\(error)"))
            return
        }
        switch message {
        case .initial:
            report(.protocolError("a second INIT after attach (WIRE-CLI-16)"))
        case .eventFD(let id, let vector):
            guard !fds.isEmpty else {
                report(.protocolError("EVENT_FD for peer \(id) vector \(vector) came without an eventfd (WIRE-CLI-11)"))
                return
            }
            let fd = EventFD(fd: fds.removeFirst())
            if let problem = addEventFD(fd, peer: id, vector: vector) {
                fd.close()
                report(.protocolError(problem))
            } else {
                report(.eventFD(peer: id, vector: vector))
            }
        case .peerGone(let id):
            if let problem = removePeer(id) { report(.protocolError(problem)) } else {
                report(.peerLeft(id))
                delegate?.linkPeerDeparted(id)
            }
        }
    }

    /// WIRE-CLI-11/12/13: vectors arrive in order per peer, below `vectors`, for a valid ID;
    /// the descriptor must really be an eventfd (WIRE-CLI-11): a pipe or socket in its place
    /// would block a doorbell or never fire.
    private func addEventFD(_ fd: EventFD, peer id: UInt32, vector: UInt32) -> String? {
        let v = vectors
        guard id < info.maxPeers else {
            return "EVENT_FD for peer \(id), but Maximum Peers is \(info.maxPeers) (WIRE-CLI-11)"
        }
        guard EventFD.isEventFD(fd.fd) else {
            let what = (try? FileSystem.readLink("/proc/self/fd/\(fd.fd.rawValue)")) ?? "unknown"
            return "EVENT_FD for peer \(id) vector \(vector) carried \(what), not an eventfd; closed (WIRE-CLI-11)"
        }
        return state.withLock { s -> String? in
            let have = s.peers[id]?.count ?? 0
            guard Int(vector) == have else { return "EVENT_FD for peer \(id) vector \(vector) out of order: expected vector \(have) (WIRE-CLI-11)" }
            guard Int(vector) < v else { return "EVENT_FD for peer \(id) vector \(vector), but the device has \(v) vector(s) (WIRE-CLI-11)" }
            if id == ownID {
                // Our own interrupt sources: non-blocking (as the RFC device makes them), so the
                // event loop can read one that epoll reported without polling it again.
                do {
                    try fd.fd.setNonBlocking(true)
                    try epoll.add(fd.fd, events: .readable, token: UInt64(vector))
                } catch {
                    return "cannot watch own eventfd for vector \(vector): \(error)"
                }
            }
            s.peers[id, default: []].append(PeerVector(fd))
            return nil
        }
    }

    /// WIRE-CLI-14, DEV-PEER-1: PEER_GONE for an unknown ID or our own is an error; otherwise the
    /// peer's eventfds are closed (once no doorbell holds them) and it becomes inactive.
    private func removePeer(_ id: UInt32) -> String? {
        guard id != ownID else { return "PEER_GONE for this device's own ID \(id) (WIRE-CLI-14)" }
        let removed = state.withLock { s in s.peers.removeValue(forKey: id) }
        return removed == nil ? "PEER_GONE for unknown peer \(id) (WIRE-CLI-14)" : nil
    }

    /// The link goes down and its event is recorded in one step, so whoever sees `isLinkUp`
    /// false also finds the `.linkDown` event (found by make stress: a check saw the flag
    /// before the event).
    private func linkDown(_ why: String) {
        let event = LinkEvent.linkDown(why)
        let handler = state.withLock { s -> (@Sendable (LinkEvent) -> Void)?? in
            guard s.linkUp else { return nil }  // already down: reported once
            s.linkUp = false
            s.events.append(event)
            return .some(s.handler)
        }
        try? epoll.remove(socket)
        if let handler { handler?(event) }
    }

    private func report(_ e: LinkEvent) {
        let h = state.withLock { s -> (@Sendable (LinkEvent) -> Void)? in
            s.events.append(e)
            return s.handler
        }
        h?(e)
    }
}
