import IvshmemModel
import IvshmemPosix
import IvshmemWire
import IvshmemSync

/// The device's side of a server connection after INIT: it holds every peer's eventfds, reads
/// EVENT_FD and PEER_GONE (WIRE-CLI-11…18), turns increments on the device's own eventfds
/// into events for the model, and turns doorbells into eventfd writes.
///
/// Ownership: the event-loop thread holds this object while it runs; the public handle
/// (``AttachedDevice``) holds it too, and closes it when the handle goes away, so a forgotten
/// `close()` cannot leak the thread or a descriptor. The device refers to it weakly.
///
/// Threads: handlers (interrupt sinks, link-event handlers) run on the event-loop thread;
/// `ring` and `broadcastStateChange` run on whichever thread wrote the device's registers.
final class ServerLink: PeerLink, @unchecked Sendable {
    let device: IvshmemDevice
    let socket: FileDescriptor
    private let epoll: Epoll
    private let wake: EventFD
    private let waitMode: WaitMode
    private var thread: EventLoopThread?

    /// How many link events are kept (older ones are counted, not kept): a server that floods
    /// the device with bad messages costs bounded memory.
    static let eventCapacity = 4096

    private struct LinkState {
        /// Eventfds per peer in vector order; the own ID's are this device's interrupt sources.
        var peers: [UInt32: [EventFD]] = [:]
        var linkUp = true
        var closed = false
        var events = BoundedLog<LinkEvent>(capacity: ServerLink.eventCapacity)
        var handler: (@Sendable (LinkEvent) -> Void)?
        var reader = MessageReader()
        var pendingFDs: [FileDescriptor] = []
        /// Doorbells and state-change signals that could not be delivered without blocking.
        var droppedSignals = 0
        /// Barrier tickets: requested by ``settle``, completed by the loop (see there).
        var barrierRequested = 0
        var barrierSeen = 0
        var barrierCompleted = 0
    }
    private let state = Locked(LinkState())

    private static let socketToken: UInt64 = .max
    private static let wakeToken: UInt64 = .max - 1

    init(device: IvshmemDevice, socket: FileDescriptor, epoll: Epoll, wake: EventFD, waitMode: WaitMode) throws {
        self.device = device
        self.socket = socket
        self.epoll = epoll
        self.wake = wake
        self.waitMode = waitMode
        try epoll.add(socket, events: [.readable, .readHangUp], token: Self.socketToken)
        try epoll.add(wake.fd, events: .readable, token: Self.wakeToken)
    }

    // MARK: introduction (WIRE-CLI-20)

    /// Reads what the server sends after INIT until the device's own eventfds for every vector
    /// have arrived: the last step of the server's introduction (WIRE-SEQ-4), after the
    /// eventfds of every peer already connected (WIRE-SEQ-3). Until this returns nothing the
    /// device does can be lost: a doorbell to a peer the server is still introducing, or a
    /// state change those peers would not be told about (WIRE-CLI-20).
    ///
    /// Every message is handled exactly as the event loop handles it later.
    func readIntroduction(deadline: Double, timeout: Double) throws {
        let vectors = device.configuration.vectors
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

    private var ownVectorCount: Int { state.withLock { $0.peers[device.id]?.count ?? 0 } }

    /// What has arrived of the introduction, for a timeout's error message.
    private var introductionProgress: String {
        let (own, others) = state.withLock { s in
            (s.peers[device.id]?.count ?? 0, s.peers.filter { $0.key != device.id }.map { "\($0.key)×\($0.value.count)" }.sorted())
        }
        return "own eventfds: \(own) of \(device.configuration.vectors); other peers' eventfds: " + (others.isEmpty ? "none" : others.joined(separator: " "))
    }

    // MARK: lifecycle

    func start(name: String) throws {
        thread = try EventLoopThread(name: name) { [self] in self.runLoop() }
    }

    /// Releases everything after a failed attach (no thread was started, or it never ran).
    func releaseAfterFailedAttach() {
        state.withLock { $0.closed = true }
        releaseResources()
    }

    /// Detaches: the server sees the hang-up and announces our departure to the others. Closes
    /// every fd this link holds. Idempotent.
    func close() {
        let first = state.withLock { s -> Bool in
            if s.closed { return false }
            s.closed = true
            return true
        }
        guard first else { return }
        try? wake.signal()
        if let t = thread, t.isCurrent {
            // Called from an interrupt or link-event handler on the loop thread: the loop
            // releases everything when it returns, after this handler.
            return
        }
        thread?.join()
        thread = nil
        releaseResources()
    }

    /// Closes every descriptor the link holds. Runs once, after the event loop stopped.
    private func releaseResources() {
        state.withLock { s in
            for fds in s.peers.values { for e in fds { e.close() } }
            s.peers.removeAll()
            for fd in s.pendingFDs { fd.closeQuietly() }
            s.pendingFDs.removeAll()
        }
        socket.closeQuietly()
        wake.close()
        epoll.close()
    }

    // MARK: observing the link

    var isLinkUp: Bool { state.withLock { $0.linkUp && !$0.closed } }
    var linkEvents: [LinkEvent] { state.withLock { $0.events.elements } }
    var droppedLinkEvents: Int { state.withLock { $0.events.dropped } }
    var droppedSignals: Int { state.withLock { $0.droppedSignals } }
    func onLinkEvent(_ handler: (@Sendable (LinkEvent) -> Void)?) { state.withLock { $0.handler = handler } }
    var activePeers: [UInt32] { state.withLock { $0.peers.filter { !$0.value.isEmpty }.keys.sorted() } }
    func heldEventFDs(peer: UInt32) -> [FileDescriptor] { state.withLock { ($0.peers[peer] ?? []).map(\.fd) } }
    var introducedPeers: [UInt32] {
        let v = device.configuration.vectors
        return state.withLock { $0.peers.filter { $0.value.count >= v }.keys.sorted() }
    }

    // MARK: barrier

    /// Waits until the event loop has handled everything that was readable when this was
    /// called: every increment already written to the device's own eventfds and every message
    /// the server had already sent. The loop sees the request on its wake fd and completes it
    /// at the end of that epoll batch, and epoll (level-triggered) reports in one batch every
    /// descriptor readable at that moment. Tests use it to say "nothing else happened" without
    /// sleeping. Returns false on timeout, when the link is closed, or when called from a
    /// handler on the loop thread itself.
    func settle(timeout: Double) -> Bool {
        // From a handler on the loop thread the loop cannot complete the barrier: refuse.
        if thread?.isCurrent == true { return false }
        let ticket = state.withLock { s -> Int? in
            guard !s.closed else { return nil }
            s.barrierRequested += 1
            return s.barrierRequested
        }
        guard let ticket else { return false }
        try? wake.signal()
        return Monotonic.poll(timeout: timeout, interval: 0.0005) {
            state.withLock { $0.barrierCompleted >= ticket || $0.closed }
        } && !state.withLock { $0.closed }
    }

    // MARK: PeerLink

    func ring(from source: UInt32, target: UInt32, vector: UInt32) -> DoorbellOutcome {
        // The write happens under the lock so that a concurrent PEER_GONE cannot close the
        // descriptor (and the number be reused) between the look-up and the write. It never
        // blocks (WIRE-CLI-21), so the lock is held briefly.
        state.withLock { s in
            guard s.linkUp || s.peers[target] != nil else { return .linkDown }
            guard let fds = s.peers[target], !fds.isEmpty else { return .inactiveTarget }
            let vectors = device.configuration.vectors  // every peer has V vectors (IRQ-VEC-1)
            guard Int(vector) < vectors else { return .noSuchVector(targetVectors: vectors) }
            guard Int(vector) < fds.count else { return .notYetAnnounced }
            return Self.signal(fds[Int(vector)], peer: target, vector: vector, dropped: &s.droppedSignals)
        }
    }

    func broadcastStateChange(from source: UInt32) {
        let dropped = state.withLock { s -> [String] in
            var why: [String] = []
            for (id, fds) in s.peers.sorted(by: { $0.key < $1.key }) where id != source {
                guard let first = fds.first else { continue }
                switch Self.signal(first, peer: id, vector: 0, dropped: &s.droppedSignals) {
                case .dropped(let m), .failed(let m): why.append(m)
                default: break
                }
            }
            return why
        }
        for m in dropped { device.recordEnvironmentFinding("WIRE-CLI-21", "state-change signal dropped: \(m)") }
    }

    /// Writes one eventfd without ever blocking (WIRE-CLI-21); counts what could not be sent.
    private static func signal(_ e: EventFD, peer: UInt32, vector: UInt32, dropped: inout Int) -> DoorbellOutcome {
        do {
            if try e.trySignal() { return .delivered }
            dropped += 1
            return .dropped("peer \(peer)'s eventfd for vector \(vector) is full or not writable (it stopped reading)")
        } catch {
            dropped += 1
            return .failed("signalling peer \(peer) vector \(vector): \(error)")
        }
    }

    func isActive(_ peer: UInt32) -> Bool { state.withLock { !($0.peers[peer]?.isEmpty ?? true) } }

    // MARK: event loop

    private func runLoop() {
        defer {
            // close() called from a handler on this thread left the teardown to us.
            if state.withLock({ $0.closed }), thread?.isCurrent == true { releaseResources() }
        }
        while !state.withLock({ $0.closed }) {
            if case .spinThenBlock(let us) = waitMode {
                spin(microseconds: us)
                if state.withLock({ $0.closed }) { return }
            }
            do {
                _ = try epoll.wait(timeoutMilliseconds: -1, dispatch)
            } catch {
                report(.linkDown("event loop failed: \(error)"))
                return
            }
            completeBarriers()
        }
    }

    /// The batch that saw the wake fd is done: the barriers requested before it are complete.
    private func completeBarriers() {
        state.withLock { s in
            if s.barrierSeen > s.barrierCompleted { s.barrierCompleted = s.barrierSeen }
        }
    }

    private func dispatch(_ token: UInt64, _ events: Epoll.Events) {
        if state.withLock({ $0.closed }) { return }  // a handler closed the link in this batch
        switch token {
        case Self.wakeToken:
            _ = try? wake.consume()
            state.withLock { $0.barrierSeen = $0.barrierRequested }
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
        var own: [EventFD] = []
        while Monotonic.now() < deadline {
            if own.count < device.configuration.vectors {
                own = state.withLock { $0.peers[device.id] ?? [] }
            }
            var got = false
            for (vector, fd) in own.enumerated() {
                if let n = try? fd.tryConsume(), n > 0 {
                    device.receiveEvent(vector: vector)
                    got = true
                }
            }
            round &+= 1
            if round & 63 == 0 {
                _ = try? epoll.wait(timeoutMilliseconds: 0, dispatch)
                completeBarriers()
                if state.withLock({ $0.closed }) { return }
                own = state.withLock { $0.peers[device.id] ?? [] }  // a peer may have left or reset
            }
            if got { deadline = Monotonic.now() + window }
        }
    }

    /// Own eventfd `vector` fired: however many signals piled up, it is one event (IRQ-COAL-2).
    private func serviceOwnEventFD(vector: Int) {
        let fd = state.withLock { s -> EventFD? in
            guard let own = s.peers[device.id], vector < own.count else { return nil }
            return own[vector]
        }
        guard let fd else { return }
        do {
            guard let count = try fd.tryConsume(), count > 0 else { return }
            device.receiveEvent(vector: vector)
        } catch {
            // Unreadable after all: stop watching it rather than spinning on a descriptor
            // that stays readable.
            try? epoll.remove(fd.fd)
            report(.protocolError("own eventfd for vector \(vector) is unusable (\(error)); no longer watched"))
        }
    }

    private func serviceSocket(_ events: Epoll.Events) {
        while !state.withLock({ $0.closed }) {
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
        state.withLock { s in
            for fd in s.pendingFDs { fd.closeQuietly() }
            s.pendingFDs.removeAll()
        }
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
                device.peerDeparted(id: id)  // DEV-PEER-2: the RFC device rings its own vector 0
            }
        }
    }

    /// WIRE-CLI-11/12/13: vectors arrive in order per peer, below `vectors`, for a valid ID;
    /// the descriptor must really be an eventfd (WIRE-CLI-11): a pipe or socket in its place
    /// would block a doorbell or never fire.
    private func addEventFD(_ fd: EventFD, peer id: UInt32, vector: UInt32) -> String? {
        let vectors = device.configuration.vectors
        guard id < device.configuration.maxPeers else {
            return "EVENT_FD for peer \(id), but Maximum Peers is \(device.configuration.maxPeers) (WIRE-CLI-11)"
        }
        guard EventFD.isEventFD(fd.fd) else {
            let what = (try? FileSystem.readLink("/proc/self/fd/\(fd.fd.rawValue)")) ?? "unknown"
            return "EVENT_FD for peer \(id) vector \(vector) carried \(what), not an eventfd; closed (WIRE-CLI-11)"
        }
        return state.withLock { s -> String? in
            let have = s.peers[id]?.count ?? 0
            guard Int(vector) == have else { return "EVENT_FD for peer \(id) vector \(vector) out of order: expected vector \(have) (WIRE-CLI-11)" }
            guard Int(vector) < vectors else { return "EVENT_FD for peer \(id) vector \(vector), but the device has \(vectors) vector(s) (WIRE-CLI-11)" }
            if id == device.id {
                // Our own interrupt sources: non-blocking (as the RFC device makes them), so the
                // event loop can read one that epoll reported without polling it again.
                do {
                    try fd.fd.setNonBlocking(true)
                    try epoll.add(fd.fd, events: .readable, token: UInt64(vector))
                } catch {
                    return "cannot watch own eventfd for vector \(vector): \(error)"
                }
            }
            s.peers[id, default: []].append(fd)
            return nil
        }
    }

    /// WIRE-CLI-14, DEV-PEER-1: PEER_GONE for an unknown ID or our own is an error; otherwise the
    /// peer's eventfds are closed and it becomes inactive.
    private func removePeer(_ id: UInt32) -> String? {
        guard id != device.id else { return "PEER_GONE for this device's own ID \(id) (WIRE-CLI-14)" }
        return state.withLock { s -> String? in
            guard let fds = s.peers.removeValue(forKey: id) else { return "PEER_GONE for unknown peer \(id) (WIRE-CLI-14)" }
            for e in fds { e.close() }
            return nil
        }
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
