import IvshmemModel
import IvshmemPosix
import IvshmemSpec
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

/// Options for `AttachedDevice.attach`.
public struct AttachOptions: Sendable {
    public var profile: String = "spec"
    public var interrupts: InterruptMode = .msix
    public var registerSpace: RegisterSpace = .memory
    public var checking: Bool = true
    public var waitMode: WaitMode = .blocking
    public init(profile: String = "spec", interrupts: InterruptMode = .msix, registerSpace: RegisterSpace = .memory,
                checking: Bool = true, waitMode: WaitMode = .blocking) {
        self.profile = profile
        self.interrupts = interrupts
        self.registerSpace = registerSpace
        self.checking = checking
        self.waitMode = waitMode
    }
}

/// An ivshmem v2 device attached to a server over its UNIX socket: the socket `PeerLink`.
///
/// `attach` reads INIT synchronously and validates it (WIRE-CLI-1…10), maps the shared memory
/// and builds the device; an event-loop thread then handles EVENT_FD and PEER_GONE
/// (WIRE-CLI-11…18) and turns the device's own eventfds into events for the model — the same
/// `receiveEvent` path the in-process fabric uses. Doorbells become eventfd writes.
///
/// Interrupt sinks and link-event handlers run on the event-loop thread.
public final class AttachedDevice: PeerLink, @unchecked Sendable {
    public let device: IvshmemDevice
    public let initialInfo: InitialInfo
    public let socketPath: String

    private let socket: FileDescriptor
    private let epoll: Epoll
    private let wake: EventFD
    private let waitMode: WaitMode
    private var thread: EventLoopThread?

    private struct LinkState {
        /// Eventfds per peer in vector order; the own ID's are this device's interrupt sources.
        var peers: [UInt32: [EventFD]] = [:]
        var linkUp = true
        var closed = false
        var events: [LinkEvent] = []
        var handler: (@Sendable (LinkEvent) -> Void)?
        var reader = MessageReader()
        var pendingFDs: [FileDescriptor] = []
    }
    private let state = Mutex(LinkState())

    private static let socketToken: UInt64 = .max
    private static let wakeToken: UInt64 = .max - 1

    // MARK: attach

    /// Connects to the server at `socketPath` and builds the device it describes.
    public static func attach(socketPath: String, options: AttachOptions = AttachOptions(), tables: SpecTables = .builtIn) throws -> AttachedDevice {
        let socket: FileDescriptor
        do { socket = try UnixSocket.connect(path: socketPath) } catch let e as SystemCallError {
            throw AttachError.connect(path: socketPath, e)
        }
        var keep: [FileDescriptor] = [socket]
        do {
            let msg = try BlockingMessageRead.read(from: socket, during: "reading INIT")
            var fds = msg.fds
            defer { for fd in fds { fd.closeQuietly() } }
            let info: InitialInfo
            do { info = try WireMessage.decodeInitial(header: msg.header, body: msg.body) } catch {
                throw AttachError.wire(error, during: "reading INIT")
            }
            guard let shmFD = fds.first else { throw AttachError.missingSharedMemory }
            fds.removeFirst()  // the rest (if any) are unexpected and closed by the defer (WIRE-CLI-18)
            let mapping: MemoryMapping
            let geometry: SharedMemoryGeometry
            do {
                defer { shmFD.closeQuietly() }
                let size: Int
                do { size = try shmFD.size() } catch let e as SystemCallError { throw AttachError.system(e, during: "fstat of the shared memory") }
                do {
                    geometry = try SharedMemoryGeometry(totalSize: UInt64(size), maxPeers: UInt64(info.maxPeers), outputSectionSize: info.outputSectionSize)
                } catch let e as GeometryError {
                    throw AttachError.sharedMemory(e.message)
                }
                do { mapping = try MemoryMapping(fd: shmFD, size: size) } catch let e as SystemCallError {
                    throw AttachError.system(e, during: "mapping the shared memory")
                }
            }
            guard info.protocol <= 0xFFFF else { throw AttachError.configuration("protocol 0x\(String(info.protocol, radix: 16)) does not fit 16 bits (DEV-CFG-6)") }
            let config = DeviceConfiguration(
                profile: options.profile, id: info.id, maxPeers: info.maxPeers, vectors: Int(info.vectors),
                protocolType: UInt16(info.protocol), rwSectionSize: geometry.rwSectionSize,
                outputSectionSize: geometry.outputSectionSize, registerSpace: options.registerSpace,
                interrupts: options.interrupts, checking: options.checking)
            let memory = IvshmemModel.SharedMemory(base: mapping.base, size: mapping.size, owner: mapping)
            let device: IvshmemDevice
            do { device = try IvshmemDevice(configuration: config, sharedMemory: memory, link: nil, tables: tables) } catch let e as DeviceConfigurationError {
                throw AttachError.configuration(e.description)
            } catch let e as SpecError {
                throw AttachError.configuration(e.description)
            }
            let epoll: Epoll
            let wake: EventFD
            do {
                epoll = try Epoll()  // closes itself if attach fails
                wake = try EventFD.create(nonBlocking: true)
                keep.append(wake.fd)
                try socket.setNonBlocking(true)
                try epoll.add(socket, events: [.readable, .readHangUp], token: socketToken)
                try epoll.add(wake.fd, events: .readable, token: wakeToken)
            } catch let e as SystemCallError {
                throw AttachError.system(e, during: "setting up the event loop")
            }
            let attached = AttachedDevice(device: device, info: info, socketPath: socketPath, socket: socket, epoll: epoll, wake: wake, waitMode: options.waitMode)
            device.link = attached
            do { try attached.start() } catch let e as SystemCallError {
                keep.removeAll()  // the link owns them now and closes them once
                attached.releaseResourcesAfterFailedStart()
                throw AttachError.system(e, during: "starting the event loop")
            }
            return attached
        } catch {
            for fd in keep { fd.closeQuietly() }
            throw error
        }
    }

    private init(device: IvshmemDevice, info: InitialInfo, socketPath: String, socket: FileDescriptor, epoll: Epoll, wake: EventFD, waitMode: WaitMode) {
        self.device = device
        self.initialInfo = info
        self.socketPath = socketPath
        self.socket = socket
        self.epoll = epoll
        self.wake = wake
        self.waitMode = waitMode
    }

    deinit { close() }

    private func start() throws {
        thread = try EventLoopThread(name: "ivshmem2-peer-\(device.id)") { [self] in self.runLoop() }
    }

    fileprivate func releaseResourcesAfterFailedStart() {
        state.withLock { $0.closed = true }
        releaseResources()
    }

    /// Detaches: the server sees the hang-up and announces our departure to the others. Closes
    /// every fd this link holds. Idempotent.
    public func close() {
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

    public var isLinkUp: Bool { state.withLock { $0.linkUp && !$0.closed } }
    /// Everything the link reported so far.
    public var linkEvents: [LinkEvent] { state.withLock { $0.events } }
    /// Called on the event-loop thread for each link event.
    public func onLinkEvent(_ handler: (@Sendable (LinkEvent) -> Void)?) { state.withLock { $0.handler = handler } }

    /// Peers whose vector-0 eventfd is known (the own ID included once its eventfds arrived).
    public var activePeers: [UInt32] { state.withLock { $0.peers.filter { !$0.value.isEmpty }.keys.sorted() } }

    /// The eventfds this link holds for `peer`, in vector order (diagnostics and tests).
    public func heldEventFDs(peer: UInt32) -> [FileDescriptor] { state.withLock { ($0.peers[peer] ?? []).map(\.fd) } }

    /// Peers whose eventfds for every vector are known: fully introduced (WIRE-SEQ-2, -3).
    public var introducedPeers: [UInt32] {
        let v = device.configuration.vectors
        return state.withLock { $0.peers.filter { $0.value.count >= v }.keys.sorted() }
    }

    /// Waits until `predicate` holds for the fully introduced peers, or `timeout` seconds pass.
    public func waitForIntroductions(timeout: Double, _ predicate: ([UInt32]) -> Bool) -> Bool {
        let deadline = Monotonic.now() + timeout
        while Monotonic.now() < deadline {
            if predicate(introducedPeers) { return true }
            Monotonic.sleep(seconds: 0.001)
        }
        return predicate(introducedPeers)
    }

    /// Waits until `predicate` holds for the active peers, or `timeout` seconds pass.
    public func waitForPeers(timeout: Double, _ predicate: ([UInt32]) -> Bool) -> Bool {
        let deadline = Monotonic.now() + timeout
        while Monotonic.now() < deadline {
            if predicate(activePeers) { return true }
            Monotonic.sleep(seconds: 0.001)
        }
        return predicate(activePeers)
    }

    // MARK: PeerLink

    public func ring(from source: UInt32, target: UInt32, vector: UInt32) -> DoorbellOutcome {
        state.withLock { s in
            guard s.linkUp || s.peers[target] != nil else { return .linkDown }
            guard let fds = s.peers[target], !fds.isEmpty else { return .inactiveTarget }
            let vectors = device.configuration.vectors  // every peer has V vectors (IRQ-VEC-1)
            guard Int(vector) < vectors else { return .noSuchVector(targetVectors: vectors) }
            guard Int(vector) < fds.count else { return .notYetAnnounced }
            do { try fds[Int(vector)].signal() } catch { return .failed("\(error)") }
            return .delivered
        }
    }

    public func broadcastStateChange(from source: UInt32) {
        state.withLock { s in
            for (id, fds) in s.peers.sorted(by: { $0.key < $1.key }) where id != source {
                if let first = fds.first { try? first.signal() }
            }
        }
    }

    public func isActive(_ peer: UInt32) -> Bool { state.withLock { !($0.peers[peer]?.isEmpty ?? true) } }

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
        }
    }

    private func dispatch(_ token: UInt64, _ events: Epoll.Events) {
        if state.withLock({ $0.closed }) { return }  // a handler closed the link in this batch
        switch token {
        case Self.wakeToken: _ = try? wake.consume()
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
            // Not an eventfd after all (a hostile server's pipe or socket at end of file): stop
            // watching it rather than spinning on a descriptor that stays readable.
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

    /// WIRE-CLI-11/12/13: vectors arrive in order per peer, below `vectors`, for a valid ID.
    private func addEventFD(_ fd: EventFD, peer id: UInt32, vector: UInt32) -> String? {
        let vectors = device.configuration.vectors
        guard id < device.configuration.maxPeers else {
            return "EVENT_FD for peer \(id), but Maximum Peers is \(device.configuration.maxPeers) (WIRE-CLI-11)"
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

    private func linkDown(_ why: String) {
        let wasUp = state.withLock { s -> Bool in
            defer { s.linkUp = false }
            return s.linkUp
        }
        try? epoll.remove(socket)
        if wasUp { report(.linkDown(why)) }
    }

    private func report(_ e: LinkEvent) {
        let h = state.withLock { s -> (@Sendable (LinkEvent) -> Void)? in
            s.events.append(e)
            return s.handler
        }
        h?(e)
    }
}
