/// What a device implementation gives the back-end library (in the spirit of libvhost-user's
/// VuDevIface): its identity, features, queues and configuration, and the call-backs.
public protocol VirtioDeviceImplementation: AnyObject {
    /// The virtio device ID (must match the link's protocol, VIRTIO-LINK-2).
    var deviceID: UInt16 { get }
    /// Device-specific feature bits; the library adds the transport's (VIRTIO-FEAT-3).
    var deviceFeatures: UInt64 { get }
    /// The largest size of each queue, by index (a power of two, VIRTIO-Q-2).
    var queueSizes: [UInt16] { get }
    /// The device configuration space at the time of (re)initialisation (VIRTIO-CFG-1).
    func initialConfig() -> [UInt8]
    /// The driver may have made buffers available on `queue` (after DRIVER_OK only, VIRTIO-STATUS-2).
    func queueNotified(_ queue: DeviceQueue, backend: VirtioBackend)
    /// The driver wrote the configuration at `offset` (VIRTIO-CFG-2). Default: ignored.
    func configWritten(offset: Int, backend: VirtioBackend)
    /// The device was reset (status 0, or the front-end went away, VIRTIO-STATUS-1).
    func deviceReset()
}

extension VirtioDeviceImplementation {
    public func configWritten(offset: Int, backend: VirtioBackend) {}
    public func deviceReset() {}
}

/// The back-end library: one virtio device served over ivshmem. It is event-loop agnostic: the
/// caller watches `descriptors` (readable when the front-end rang or changed its state) and
/// calls `process()`; everything the device does happens inside that call.
///
/// Life cycle (VIRTIO-STATE-1, -3): State 0, wait until the front-end's State Table entry is 0,
/// initialise the header, State 1, wait for the front-end's State 1, then serve write
/// transactions (VIRTIO-WT-2) and queues; when the front-end leaves the ready state, start over.
public final class VirtioBackend: @unchecked Sendable {
    public enum Phase: Sendable, Equatable { case idle, waitingForReset, waitingForFrontEnd, running }

    public let endpoint: VirtioEndpoint
    public let device: any VirtioDeviceImplementation
    public var findings: VirtioFindingLog { endpoint.findings }
    public private(set) var phase: Phase = .idle
    /// Features the driver acknowledged (valid after FEATURES_OK).
    public private(set) var driverFeatures: UInt64 = 0
    public private(set) var status = VirtioStatus()
    /// Completed write transactions, by header offset (for tests and traces).
    public private(set) var transactions: [Int] = []

    private struct QueueState {
        var size: UInt16
        var maxSize: UInt16
        var deviceVector: UInt16
        var driverVector: UInt16 = 0
        var enable: UInt16 = 0
        var desc: UInt64 = 0
        var driver: UInt64 = 0
        var device: UInt64 = 0
        var active: DeviceQueue?
        var kickedEarly = false
    }
    private var queues: [QueueState] = []
    private var selected = 0
    private var configSize = 0

    public var headerSize: Int { VirtioHeader.config + configSize }
    public var descriptors: [Int32] { [endpoint.interrupts.fd.rawValue] }

    public init(endpoint: VirtioEndpoint, device: any VirtioDeviceImplementation) throws {
        guard endpoint.isBackEnd else {
            throw VirtioError("VIRTIO-LINK-2", "protocol 0x\(String(endpoint.protocolValue, radix: 16)) is a front-end's; a back-end needs C000h-FFFFh")
        }
        guard VirtioDeviceID.of(protocol: endpoint.protocolValue) == device.deviceID else {
            throw VirtioError("VIRTIO-LINK-2", "the link's protocol carries device ID \(VirtioDeviceID.of(protocol: endpoint.protocolValue)), this device is \(device.deviceID)")
        }
        self.endpoint = endpoint
        self.device = device
    }

    /// The vector the front-end rings to kick a queue: 1 when there are two or more (as
    /// Jailhouse's block back-end), else 0.
    private var kickVector: UInt16 { endpoint.vectors >= 2 ? 1 : 0 }

    /// Writes State 0 and begins (VIRTIO-STATE-1). Then call `process()` whenever a descriptor is readable.
    public func start() {
        endpoint.setState(0)
        phase = .waitingForReset
        step(vectors: [])
    }

    /// Handles whatever happened: state changes, a pending write transaction, available buffers.
    public func process() {
        step(vectors: endpoint.takeInterrupts())
    }

    private func step(vectors: [UInt32]) {
        while true {
            switch phase {
            case .idle: return
            case .waitingForReset:
                guard endpoint.peerState == 0 else { return }
                initialiseHeader()
                endpoint.setState(1)
                phase = .waitingForFrontEnd
            case .waitingForFrontEnd:
                guard endpoint.peerState == 1 else { return }
                phase = .running
            case .running:
                guard endpoint.peerState == 1 else {
                    resetDevice()
                    endpoint.setState(0)
                    phase = .waitingForReset
                    continue
                }
                serveTransaction()
                serveQueues(kicked: vectors.contains { $0 != 0 })
                return
            }
        }
    }

    // MARK: header

    private func initialiseHeader() {
        let rw = endpoint.rw
        let config = device.initialConfig()
        configSize = config.count
        rw.zero(at: 0, count: min(rw.size, headerSize))
        rw.store(VirtioHeader.revision, VirtioHeader.currentRevision)
        rw.store(VirtioHeader.size, UInt32(headerSize))
        config.withUnsafeBytes { rw.copyIn($0, at: VirtioHeader.config) }
        queues = device.queueSizes.map { QueueState(size: $0, maxSize: $0, deviceVector: kickVector) }
        selected = 0
        driverFeatures = 0
        status = []
        loadSelectedQueue()
        rw.store(VirtioHeader.deviceFeatures, UInt32(truncatingIfNeeded: offeredFeatures))
        rw.fence()
    }

    public var offeredFeatures: UInt64 { device.deviceFeatures | VirtioFeature.transport }

    private func loadSelectedQueue() {
        let rw = endpoint.rw
        let q = selected < queues.count ? queues[selected] : QueueState(size: 0, maxSize: 0, deviceVector: 0)
        rw.store(VirtioHeader.queueSize, q.size)
        rw.store(VirtioHeader.queueDeviceVector, q.deviceVector)
        rw.store(VirtioHeader.queueDriverVector, q.driverVector)
        rw.store(VirtioHeader.queueEnable, q.enable)
        rw.store(VirtioHeader.queueDesc, q.desc)
        rw.store(VirtioHeader.queueDriver, q.driver)
        rw.store(VirtioHeader.queueDevice, q.device)
    }

    private func resetDevice() {
        for i in queues.indices { queues[i] = QueueState(size: queues[i].maxSize, maxSize: queues[i].maxSize, deviceVector: kickVector) }
        driverFeatures = 0
        status = []
        device.deviceReset()
    }

    // MARK: write transactions (VIRTIO-WT-2)

    private func serveTransaction() {
        let rw = endpoint.rw
        let offset = Int(rw.loadAcquire32(VirtioHeader.writeTransaction))
        guard offset != 0 else { return }
        apply(offset)
        transactions.append(offset)
        rw.fence()
        rw.storeRelease32(VirtioHeader.writeTransaction, 0)
    }

    private func apply(_ offset: Int) {
        let rw = endpoint.rw
        let q = selected < queues.count ? selected : nil
        switch offset {
        case VirtioHeader.deviceFeaturesSel:
            let sel: UInt32 = rw.load(offset)
            rw.store(VirtioHeader.deviceFeatures, sel < 2 ? UInt32(truncatingIfNeeded: offeredFeatures >> (32 * UInt64(sel))) : 0)
        case VirtioHeader.driverFeaturesSel:
            break
        case VirtioHeader.driverFeatures:
            let sel: UInt32 = rw.load(VirtioHeader.driverFeaturesSel), word = UInt64(rw.load(offset) as UInt32)
            guard sel < 2 else {
                findings.record("VIRTIO-FEAT-2", .frontEnd, "driver_features written with driver_features_sel \(sel) (only 0 and 1 exist)")
                return
            }
            let shift = 32 * UInt64(sel)
            driverFeatures = driverFeatures & ~(0xFFFF_FFFF << shift) | word << shift
        case VirtioHeader.queueSel:
            selected = Int(rw.load(offset) as UInt32)
            loadSelectedQueue()
        case VirtioHeader.queueSize, VirtioHeader.queueDriverVector, VirtioHeader.queueDesc, VirtioHeader.queueDriver, VirtioHeader.queueDevice:
            guard let q else { return noQueue(offset) }
            switch offset {
            case VirtioHeader.queueSize:
                let size: UInt16 = rw.load(offset)
                if size == 0 || size > queues[q].maxSize || size & (size - 1) != 0 {
                    findings.record("VIRTIO-Q-2", .frontEnd, "queue \(q): size \(size) (the device offers at most \(queues[q].maxSize), a power of two)")
                }
                queues[q].size = size
            case VirtioHeader.queueDriverVector: queues[q].driverVector = rw.load(offset)
            case VirtioHeader.queueDesc: queues[q].desc = rw.load(offset)
            case VirtioHeader.queueDriver: queues[q].driver = rw.load(offset)
            default: queues[q].device = rw.load(offset)
            }
        case VirtioHeader.queueEnable:
            guard let q else { return noQueue(offset) }
            let enable: UInt16 = rw.load(offset)
            if enable == 0 {
                queues[q].enable = 0
                queues[q].active = nil
                return
            }
            let layout = SplitRingLayout(size: queues[q].size, desc: queues[q].desc, avail: queues[q].driver, used: queues[q].device)
            let tooLarge = queues[q].size > queues[q].maxSize
                ? (requirement: "VIRTIO-Q-2", message: "size \(queues[q].size) exceeds the device's maximum \(queues[q].maxSize)") : nil
            if let p = tooLarge ?? layout.problem(in: rw, headerSize: headerSize) {
                findings.record(p.requirement, .frontEnd, "queue \(q) not enabled: \(p.message)")
                rw.store(VirtioHeader.queueEnable, UInt16(0))
                return
            }
            queues[q].enable = 1
            queues[q].active = DeviceQueue(index: q, layout: layout, driverVector: queues[q].driverVector, rw: rw, findings: findings)
        case VirtioHeader.deviceStatus:
            applyStatus(VirtioStatus(rawValue: rw.load(offset)))
        case let o where o >= VirtioHeader.config && o < headerSize:
            device.configWritten(offset: o - VirtioHeader.config, backend: self)
        default:
            findings.record("VIRTIO-WT-4", .frontEnd, "write transaction names \(VirtioHeader.name(of: offset)), which the driver may not write")
        }
    }

    private func noQueue(_ offset: Int) {
        findings.record("VIRTIO-Q-1", .frontEnd, "\(VirtioHeader.name(of: offset)) written while queue_sel \(selected) selects no queue (the device has \(queues.count))")
    }

    private func applyStatus(_ new: VirtioStatus) {
        if new.rawValue == 0 {
            resetDevice()
            initialiseHeaderKeepingLink()
            return
        }
        if new.contains(.featuresOK) && !status.contains(.featuresOK) {
            var refuse = false
            if driverFeatures & VirtioFeature.version1 == 0 {
                findings.record("VIRTIO-FEAT-3", .frontEnd, "FEATURES_OK without VIRTIO_F_VERSION_1 accepted")
                refuse = true
            }
            let extra = driverFeatures & ~offeredFeatures
            if extra != 0 {
                findings.record("VIRTIO-FEAT-4", .frontEnd, "driver accepted features 0x\(String(extra, radix: 16)) the device did not offer")
                refuse = true
            }
            if refuse {
                // The device refuses the features: FEATURES_OK does not stick (virtio 1.x §3.1.1).
                status = VirtioStatus(rawValue: new.rawValue & ~VirtioStatus.featuresOK.rawValue)
                endpoint.rw.store(VirtioHeader.deviceStatus, status.rawValue)
                return
            }
        }
        if new.contains(.driverOK) && !status.contains(.driverOK) && !new.contains(.featuresOK) {
            findings.record("VIRTIO-STATUS-2", .frontEnd, "DRIVER_OK set without FEATURES_OK (status \(new))")
        }
        status = new
    }

    /// Status 0 from the driver: the device resets but the link stays up (VIRTIO-STATUS-1).
    private func initialiseHeaderKeepingLink() {
        selected = 0
        loadSelectedQueue()
        endpoint.rw.store(VirtioHeader.deviceStatus, UInt32(0))
    }

    // MARK: queues and notifications

    private func serveQueues(kicked: Bool) {
        let ready = status.contains(.driverOK)
        for i in queues.indices {
            guard let q = queues[i].active else { continue }
            if !ready {
                if (kicked || q.hasAvailable) && !queues[i].kickedEarly {
                    queues[i].kickedEarly = true
                    findings.record("VIRTIO-NOTIFY-2", .frontEnd, "queue \(i): buffers made available or a kick before DRIVER_OK (status \(status))")
                }
                continue
            }
            if q.hasAvailable { device.queueNotified(q, backend: self) }
        }
    }

    /// Tells the front-end that `queue` has used buffers: queue_event, then its driver vector
    /// (VIRTIO-NOTIFY-3).
    public func notify(_ queue: DeviceQueue) {
        endpoint.rw.store(VirtioHeader.queueEvent, UInt8(1))
        endpoint.rw.fence()
        endpoint.ring(vector: queue.driverVector)
    }

    /// Replaces `bytes.count` bytes of the configuration at `offset`: config_generation odd
    /// while writing, then even; then config_event and vector 0 (VIRTIO-CFG-1, VIRTIO-NOTIFY-3).
    public func updateConfig(offset: Int, bytes: [UInt8]) {
        let rw = endpoint.rw
        precondition(offset >= 0 && offset + bytes.count <= configSize, "config update beyond the configuration space")
        let generation: UInt32 = rw.load(VirtioHeader.configGeneration)
        rw.storeRelease32(VirtioHeader.configGeneration, generation &+ 1)
        rw.fence()
        bytes.withUnsafeBytes { rw.copyIn($0, at: VirtioHeader.config + offset) }
        rw.fence()
        rw.storeRelease32(VirtioHeader.configGeneration, generation &+ 2)
        rw.store(VirtioHeader.configEvent, UInt8(1))
        rw.fence()
        if phase == .running { endpoint.ring(vector: 0) }
    }

    /// The active queue `index`, if the driver enabled it.
    public func queue(_ index: Int) -> DeviceQueue? { index < queues.count ? queues[index].active : nil }
}
