@_exported import IvshmemLink
import IvshmemModel
import IvshmemPosix
import IvshmemSpec
import IvshmemWire

/// Options for `AttachedDevice.attach`.
public struct AttachOptions: Sendable {
    public var profile: String = "spec"
    public var interrupts: InterruptMode = .msix
    public var registerSpace: RegisterSpace = .memory
    public var checking: Bool = true
    public var waitMode: WaitMode = .blocking
    /// How long the server may take to send INIT and introduce the peers (seconds).
    public var timeout: Double = 10
    /// Where the shared memory appears for profiles without BAR2 (the Base Address field,
    /// CAP-VS-7); nil: the configuration's default.
    public var baseAddress: UInt64?
    public init(profile: String = "spec", interrupts: InterruptMode = .msix, registerSpace: RegisterSpace = .memory,
                checking: Bool = true, waitMode: WaitMode = .blocking, timeout: Double = 10) {
        self.profile = profile
        self.interrupts = interrupts
        self.registerSpace = registerSpace
        self.checking = checking
        self.waitMode = waitMode
        self.timeout = timeout
    }
}

/// An ivshmem v2 device attached to a server over its UNIX socket: the composition of a
/// ``ServerLink`` (wire messages and descriptors) and an ``IvshmemDevice`` built from INIT.
///
/// `attach` reads INIT and validates it (WIRE-CLI-1…10), maps the shared memory, builds the
/// device, and reads the server's introduction up to the device's own eventfds (WIRE-CLI-20):
/// when it returns, every peer that was connected before is known and the device's interrupt
/// sources are in place, so nothing the device does right away is lost. The link's event-loop
/// thread then follows the server.
///
/// Ownership: this handle owns the link; the device refers to the handle (its ``PeerLink``)
/// weakly, and the link holds only the device's event sink, so dropping the last reference to
/// the handle detaches like ``close()`` — its thread ends and every descriptor closes.
public final class AttachedDevice: PeerLink, @unchecked Sendable {
    public let device: IvshmemDevice
    public let initialInfo: InitialInfo
    public let socketPath: String
    let link: ServerLink

    private init(link: ServerLink, device: IvshmemDevice, info: InitialInfo, socketPath: String) {
        self.link = link
        self.device = device
        self.initialInfo = info
        self.socketPath = socketPath
    }

    deinit { link.close() }

    /// Turns what the link hears into device events (on the event-loop thread).
    private final class DeviceEvents: ServerLinkDelegate {
        let device: IvshmemDevice
        init(_ d: IvshmemDevice) { device = d }
        func linkReceivedEvent(vector: Int) { device.receiveEvent(vector: vector) }
        // DEV-PEER-2: the RFC device rings its own vector 0 when a peer leaves.
        func linkPeerDeparted(_ id: UInt32) { device.peerDeparted(id: id) }
    }

    // MARK: attach

    /// Connects to the server at `socketPath` and builds the device it describes.
    public static func attach(socketPath: String, options: AttachOptions = AttachOptions(), tables: SpecTables = .builtIn) throws -> AttachedDevice {
        let timeout = options.timeout.isFinite ? min(max(options.timeout, 0.001), 3600) : 3600
        let deadline = Monotonic.now() + timeout
        let (link, info, shmFD) = try ServerLink.connect(socketPath: socketPath, waitMode: options.waitMode, deadline: deadline, timeout: timeout)
        do {
            let memory: IvshmemModel.SharedMemory
            let geometry: SharedMemoryGeometry
            let sealed: Bool
            do {
                defer { shmFD.closeQuietly() }
                (memory, geometry, sealed) = try mapSharedMemory(shmFD, info: info)
            }
            guard info.protocol <= 0xFFFF else { throw AttachError.configuration("protocol 0x\(String(info.protocol, radix: 16)) does not fit 16 bits (DEV-CFG-6)") }
            var config = DeviceConfiguration(
                profile: options.profile, id: info.id, maxPeers: info.maxPeers, vectors: Int(info.vectors),
                protocolType: UInt16(info.protocol), rwSectionSize: geometry.rwSectionSize,
                outputSectionSize: geometry.outputSectionSize, registerSpace: options.registerSpace,
                interrupts: options.interrupts, checking: options.checking)
            if let base = options.baseAddress { config.baseAddress = base }
            let device: IvshmemDevice
            do { device = try IvshmemDevice(configuration: config, sharedMemory: memory, link: nil, tables: tables) } catch let e as DeviceConfigurationError {
                throw AttachError.configuration(e.description)
            } catch let e as SpecError {
                throw AttachError.configuration(e.description)
            }
            if !sealed {
                device.recordEnvironmentFinding("SHM-SIZE-1", "the server's shared memory is not sealed against shrinking (F_SEAL_SHRINK): another peer can shrink it under this device; accesses beyond the current size fail cleanly")
            }
            let handle = AttachedDevice(link: link, device: device, info: info, socketPath: socketPath)
            device.link = handle
            do {
                try link.readIntroduction(delegate: DeviceEvents(device), deadline: deadline, timeout: timeout)
                try link.start(name: "ivshmem2-peer-\(device.id)")
            } catch {
                device.link = nil
                throw error
            }
            return handle
        } catch {
            link.releaseAfterFailedAttach()
            throw error
        }
    }

    /// Maps the memory INIT carried and checks it holds the layout INIT describes (WIRE-CLI-7,
    /// WIRE-CLI-8); says whether its size is sealed against shrinking (SHM-SIZE-1).
    private static func mapSharedMemory(_ fd: FileDescriptor, info: InitialInfo) throws -> (IvshmemModel.SharedMemory, SharedMemoryGeometry, Bool) {
        let size: Int
        do { size = try fd.size() } catch let e as SystemCallError { throw AttachError.system(e, during: "fstat of the shared memory") }
        let geometry: SharedMemoryGeometry
        do {
            geometry = try SharedMemoryGeometry(totalSize: UInt64(size), maxPeers: UInt64(info.maxPeers), outputSectionSize: info.outputSectionSize)
        } catch let e as GeometryError {
            throw AttachError.sharedMemory(e.message)
        }
        let mapping: MemoryMapping
        do { mapping = try MemoryMapping(fd: fd, size: size) } catch let e as SystemCallError {
            throw AttachError.system(e, during: "mapping the shared memory")
        }
        let sealed = (try? SharedMemory.seals(of: fd).contains(.shrink)) ?? false
        // Unsealed memory can shrink under us: every access then goes through a guard that
        // turns a SIGBUS into an error instead of a crash (SHM-SIZE-1).
        let memory = IvshmemModel.SharedMemory(base: mapping.base, size: mapping.size, owner: mapping, guarded: !sealed)
        return (memory, geometry, sealed)
    }

    // MARK: detaching

    /// Detaches: the server sees the hang-up and announces our departure to the others. Closes
    /// every fd this link holds. Idempotent.
    public func close() { link.close() }

    // MARK: observing the link

    public var isLinkUp: Bool { link.isLinkUp }
    /// The link events kept (the newest ``ServerLink/eventCapacity``), oldest first.
    public var linkEvents: [LinkEvent] { link.linkEvents }
    /// Link events dropped to keep memory bounded.
    public var droppedLinkEvents: Int { link.droppedLinkEvents }
    /// Doorbells and state-change signals dropped because a peer's eventfd was full (WIRE-CLI-21).
    public var droppedSignals: Int { link.droppedSignals }
    /// Called on the event-loop thread for each link event.
    public func onLinkEvent(_ handler: (@Sendable (LinkEvent) -> Void)?) { link.onLinkEvent(handler) }
    /// Peers whose vector-0 eventfd is known (the own ID included once its eventfds arrived).
    public var activePeers: [UInt32] { link.activePeers }
    /// The eventfds this link holds for `peer`, in vector order (diagnostics and tests).
    public func heldEventFDs(peer: UInt32) -> [FileDescriptor] { link.heldEventFDs(peer: peer) }
    /// Peers whose eventfds for every vector are known: fully introduced (WIRE-SEQ-2, -3).
    public var introducedPeers: [UInt32] { link.introducedPeers }

    /// Waits until `predicate` holds for the fully introduced peers, or `timeout` seconds pass.
    public func waitForIntroductions(timeout: Double, _ predicate: ([UInt32]) -> Bool) -> Bool {
        Monotonic.poll(timeout: timeout) { predicate(introducedPeers) }
    }

    /// Waits until `predicate` holds for the active peers, or `timeout` seconds pass.
    public func waitForPeers(timeout: Double, _ predicate: ([UInt32]) -> Bool) -> Bool {
        Monotonic.poll(timeout: timeout) { predicate(activePeers) }
    }

    /// Waits until the device has handled every event and server message that had arrived
    /// when this was called (a barrier through the event loop, not a sleep). False on timeout,
    /// when the link is closed, or when called from an interrupt or link-event handler.
    public func settle(timeout: Double = 10) -> Bool { link.settle(timeout: timeout) }

    // MARK: PeerLink

    public func ring(from source: UInt32, target: UInt32, vector: UInt32) -> DoorbellOutcome { link.signal(peer: target, vector: vector) }

    public func broadcastStateChange(from source: UInt32) {
        for m in link.broadcast(from: source) { device.recordEnvironmentFinding("WIRE-CLI-21", "state-change signal dropped: \(m)") }
    }

    public func isActive(_ peer: UInt32) -> Bool { link.isActive(peer) }
}
