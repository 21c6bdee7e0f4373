import IvshmemPosix

/// The front-end driver model: what Linux's virtio_ivshmem.c does for a guest, as a library a
/// test (or the `ivshmem2 virtio` tool) drives step by step. Every transport rule the back-end
/// breaks is recorded in `findings` with its requirement ID; the driver-side steps are public so
/// that a test can also take them in a wrong order and watch the back-end's findings.
public final class VirtioFrontend: @unchecked Sendable {
    public let endpoint: VirtioEndpoint
    public var findings: VirtioFindingLog { endpoint.findings }
    /// How long a write transaction may stay pending before it is a finding (VIRTIO-WT-3).
    public var transactionTimeout: Double = 5
    public private(set) var headerSize = 0
    public private(set) var features: UInt64 = 0
    private var nextFree = 0
    private var failed = false

    public var deviceID: UInt16 { VirtioDeviceID.of(protocol: endpoint.protocolValue) }

    public init(endpoint: VirtioEndpoint) throws {
        guard !endpoint.isBackEnd else {
            throw VirtioError("VIRTIO-LINK-2", "protocol 0x\(String(endpoint.protocolValue, radix: 16)) is a back-end's; a front-end needs 8000h-BFFFh")
        }
        self.endpoint = endpoint
    }

    // MARK: probe (VIRTIO-STATE-2, VIRTIO-HDR-2)

    /// Waits (interrupt-driven: the back-end's State write rings vector 0) until the back-end is
    /// ready, checks the header, reserves it from the buffer pool and writes State 1.
    public func probe(timeout: Double = 10) throws {
        let deadline = Monotonic.now() + timeout
        while endpoint.peerState != 1 {
            let left = deadline - Monotonic.now()
            guard left > 0 else { throw VirtioError("VIRTIO-STATE-2", "the back-end did not become ready (State \(endpoint.peerState)) in \(timeout) s") }
            endpoint.waitForInterrupt(timeout: min(left, 0.05))
            _ = endpoint.takeInterrupts()
        }
        let rw = endpoint.rw
        rw.fence()
        let revision: UInt32 = rw.load(VirtioHeader.revision), size: UInt32 = rw.load(VirtioHeader.size)
        guard revision >= VirtioHeader.currentRevision else {
            findings.record("VIRTIO-HDR-2", .backEnd, "header revision \(revision)")
            throw VirtioError("VIRTIO-HDR-2", "invalid virtio-ivshmem revision \(revision)")
        }
        guard size >= UInt32(VirtioHeader.config), Int(size) <= rw.size / 2 else {
            findings.record("VIRTIO-HDR-2", .backEnd, "header size \(size) (must hold the registers, and leave room for the queues)")
            throw VirtioError("VIRTIO-HDR-2", "invalid header size \(size)")
        }
        headerSize = Int(size)
        nextFree = (headerSize + 63) / 64 * 64
        failed = false
        endpoint.setState(1)
    }

    /// Leaves: State 0 (the back-end resets, VIRTIO-STATE-3).
    public func remove() { endpoint.setState(0) }

    /// The back-end left the ready state: the device is broken (VIRTIO-STATE-3).
    private func checkBackEnd() throws {
        guard endpoint.peerState == 1 else {
            if !failed { findings.record("VIRTIO-STATE-3", .backEnd, "the back-end left the ready state (State \(endpoint.peerState))") }
            failed = true
            throw VirtioError("VIRTIO-STATE-3", "back-end failed")
        }
    }

    // MARK: register writes (VIRTIO-WT-1, VIRTIO-WT-3)

    /// Waits until the back-end cleared the pending write transaction.
    public func synchronize() throws {
        let rw = endpoint.rw
        if rw.loadAcquire32(VirtioHeader.writeTransaction) == 0 { return }
        var stuckAt: UInt32 = 0
        let cleared = Monotonic.poll(timeout: transactionTimeout, interval: 0.0001) {
            stuckAt = rw.loadAcquire32(VirtioHeader.writeTransaction)
            return stuckAt == 0 || endpoint.peerState != 1
        }
        try checkBackEnd()
        guard cleared else {
            findings.record("VIRTIO-WT-3", .backEnd, "write transaction for \(VirtioHeader.name(of: Int(stuckAt))) not cleared within \(transactionTimeout) s")
            throw VirtioError("VIRTIO-WT-3", "write transaction not cleared")
        }
    }

    /// Stores `value` (1, 2, 4 or 8 bytes) at header `offset`, names it in write_transaction and
    /// rings the back-end's vector 0 — after the previous transaction completed.
    public func writeRegister(_ offset: Int, size: Int, value: UInt64) throws {
        try synchronize()
        let rw = endpoint.rw
        switch size {
        case 1: rw.store(offset, UInt8(truncatingIfNeeded: value))
        case 2: rw.store(offset, UInt16(truncatingIfNeeded: value))
        case 4: rw.store(offset, UInt32(truncatingIfNeeded: value))
        default: rw.store(offset, value)
        }
        rw.fence()
        rw.storeRelease32(VirtioHeader.writeTransaction, UInt32(offset))
        rw.fence()
        endpoint.ring(vector: 0)
    }

    // MARK: status and features (VIRTIO-STATUS-1, VIRTIO-FEAT-1, -2, -3)

    public var status: VirtioStatus { VirtioStatus(rawValue: (endpoint.rw.load(VirtioHeader.deviceStatus) as UInt32) & 0xFF) }

    public func setStatus(_ s: VirtioStatus) throws { try writeRegister(VirtioHeader.deviceStatus, size: 4, value: UInt64(s.rawValue)) }

    public func reset() throws {
        try writeRegister(VirtioHeader.deviceStatus, size: 4, value: 0)
        try synchronize()
    }

    /// The device's 64 feature bits: select word 1, read, select word 0, read.
    public func deviceFeatures() throws -> UInt64 {
        try writeRegister(VirtioHeader.deviceFeaturesSel, size: 4, value: 1)
        try synchronize()
        let high = UInt64(endpoint.rw.load(VirtioHeader.deviceFeatures) as UInt32)
        try writeRegister(VirtioHeader.deviceFeaturesSel, size: 4, value: 0)
        try synchronize()
        return high << 32 | UInt64(endpoint.rw.load(VirtioHeader.deviceFeatures) as UInt32)
    }

    /// Writes the driver's features, word 1 first, then word 0 (as Linux does).
    public func writeDriverFeatures(_ f: UInt64) throws {
        try writeRegister(VirtioHeader.driverFeaturesSel, size: 4, value: 1)
        try writeRegister(VirtioHeader.driverFeatures, size: 4, value: f >> 32)
        try writeRegister(VirtioHeader.driverFeaturesSel, size: 4, value: 0)
        try writeRegister(VirtioHeader.driverFeatures, size: 4, value: f & 0xFFFF_FFFF)
    }

    /// Reset, ACKNOWLEDGE|DRIVER, read the offer, accept `wanted` ∩ offer (VERSION_1 required),
    /// FEATURES_OK, and check it stuck. Returns the negotiated features.
    @discardableResult
    public func negotiate(wanted: UInt64) throws -> UInt64 {
        try reset()
        try setStatus([.acknowledge, .driver])
        let offered = try deviceFeatures()
        guard offered & VirtioFeature.version1 != 0 else {
            findings.record("VIRTIO-FEAT-3", .backEnd, "the device does not offer VIRTIO_F_VERSION_1 (offer 0x\(String(offered, radix: 16)))")
            try setStatus([.acknowledge, .driver, .failed])
            throw VirtioError("VIRTIO-FEAT-3", "device does not have VIRTIO_F_VERSION_1")
        }
        let accepted = (wanted | VirtioFeature.version1) & offered
        try writeDriverFeatures(accepted)
        try setStatus([.acknowledge, .driver, .featuresOK])
        try synchronize()
        guard status.contains(.featuresOK) else { throw VirtioError("VIRTIO-FEAT-4", "the device refused the features 0x\(String(accepted, radix: 16))") }
        features = accepted
        return accepted
    }

    /// DRIVER_OK (after the queues are set up).
    public func driverOK() throws {
        try setStatus([.acknowledge, .driver, .featuresOK, .driverOK])
        try synchronize()
    }

    // MARK: configuration (VIRTIO-CFG-1, VIRTIO-CFG-2)

    /// `count` configuration bytes at `offset`, read consistently: retried while
    /// config_generation is odd or changes during the read.
    public func readConfig(offset: Int, count: Int) throws -> [UInt8] {
        let rw = endpoint.rw
        let deadline = Monotonic.now() + transactionTimeout
        while true {
            let before = rw.loadAcquire32(VirtioHeader.configGeneration)
            if before & 1 == 0 {
                let bytes = rw.bytes(at: VirtioHeader.config + offset, count: count)
                rw.fence()
                if rw.loadAcquire32(VirtioHeader.configGeneration) == before { return bytes }
            }
            try checkBackEnd()
            guard Monotonic.now() < deadline else {
                findings.record("VIRTIO-CFG-1", .backEnd, "config_generation stayed odd (\(before)) for \(transactionTimeout) s")
                throw VirtioError("VIRTIO-CFG-1", "configuration never stable")
            }
        }
    }

    public func writeConfig(offset: Int, size: Int, value: UInt64) throws {
        try writeRegister(VirtioHeader.config + offset, size: size, value: value)
    }

    /// Clears config_event; returns whether it was set (the back-end changed the configuration).
    public func takeConfigEvent() -> Bool {
        let rw = endpoint.rw
        guard (rw.load(VirtioHeader.configEvent) as UInt8) & 1 != 0 else { return false }
        rw.store(VirtioHeader.configEvent, UInt8(0))
        rw.fence()
        return true
    }

    // MARK: buffers and queues (VIRTIO-Q-1…5)

    /// `bytes` of the R/W section for rings or bounce buffers (the front-end owns the pool).
    public func allocate(_ bytes: Int, alignment: Int = 64) throws -> Int {
        let start = (nextFree + alignment - 1) / alignment * alignment
        guard start + bytes <= endpoint.rw.size else {
            throw VirtioError("VIRTIO-LINK-3", "R/W section full: \(bytes) bytes wanted, \(endpoint.rw.size - start) left")
        }
        nextFree = start + bytes
        return start
    }

    /// The driver vector Linux would give queue `index` of `count`: per-queue vectors 1…count
    /// when there are 1 + count vectors, else vector 1 for all queues, else 0.
    public func driverVector(queue index: Int, of count: Int) -> UInt16 {
        let v = endpoint.vectors
        if v >= 1 + count { return UInt16(1 + index) }
        return v >= 2 ? 1 : 0
    }

    /// Selects queue `index`, reads its size and device vector, allocates the rings and
    /// activates it (queue_size, queue_driver_vector, queue_desc/driver/device, queue_enable).
    public func setUpQueue(_ index: Int, of count: Int, size: UInt16? = nil) throws -> DriverQueue {
        try writeRegister(VirtioHeader.queueSel, size: 4, value: UInt64(index))
        try synchronize()
        let rw = endpoint.rw
        let max: UInt16 = rw.load(VirtioHeader.queueSize), deviceVector: UInt16 = rw.load(VirtioHeader.queueDeviceVector)
        guard max > 0 else { throw VirtioError("VIRTIO-Q-1", "queue \(index) does not exist (size 0)") }
        let n = Int(min(size ?? max, max))
        let desc = try allocate(SplitRingLayout.descBytes(n), alignment: 16)
        let avail = try allocate(SplitRingLayout.availBytes(n), alignment: 2)
        let used = try allocate(SplitRingLayout.usedBytes(n), alignment: 4)
        rw.zero(at: desc, count: used + SplitRingLayout.usedBytes(n) - desc)
        let layout = SplitRingLayout(size: UInt16(n), desc: UInt64(desc), avail: UInt64(avail), used: UInt64(used))
        return try enableQueue(index, layout: layout, deviceVector: deviceVector, driverVector: driverVector(queue: index, of: count))
    }

    /// Activates queue `index` (already selected) with a given layout; no checks here, so a
    /// test can hand the back-end a bad one.
    public func enableQueue(_ index: Int, layout: SplitRingLayout, deviceVector: UInt16, driverVector: UInt16) throws -> DriverQueue {
        try writeRegister(VirtioHeader.queueSize, size: 2, value: UInt64(layout.size))
        try writeRegister(VirtioHeader.queueDriverVector, size: 2, value: UInt64(driverVector))
        try writeRegister(VirtioHeader.queueDesc, size: 8, value: layout.desc)
        try writeRegister(VirtioHeader.queueDriver, size: 8, value: layout.avail)
        try writeRegister(VirtioHeader.queueDevice, size: 8, value: layout.used)
        try writeRegister(VirtioHeader.queueEnable, size: 2, value: 1)
        try synchronize()
        return DriverQueue(index: index, layout: layout, deviceVector: deviceVector, driverVector: driverVector, rw: endpoint.rw, findings: findings)
    }

    /// Kicks `queue`: the back-end's queue_device_vector (VIRTIO-NOTIFY-1).
    public func kick(_ queue: DriverQueue) {
        endpoint.rw.fence()
        endpoint.ring(vector: queue.deviceVector)
    }

    /// Waits for the next used chain of `queue`, interrupt-driven; clears queue_event as the
    /// interrupt handler does (VIRTIO-NOTIFY-3).
    public func waitForUsed(_ queue: DriverQueue, timeout: Double = 10) throws -> (head: UInt16, written: UInt32) {
        let deadline = Monotonic.now() + timeout
        while true {
            if let u = queue.takeUsed() { return u }
            try checkBackEnd()
            let left = deadline - Monotonic.now()
            guard left > 0 else { throw VirtioError("VIRTIO-NOTIFY-3", "queue \(queue.index): nothing used within \(timeout) s") }
            endpoint.waitForInterrupt(timeout: min(left, 0.05))
            _ = endpoint.takeInterrupts()
            let rw = endpoint.rw
            if (rw.load(VirtioHeader.queueEvent) as UInt8) & 1 != 0 {
                rw.store(VirtioHeader.queueEvent, UInt8(0))
                rw.fence()
            }
        }
    }
}
