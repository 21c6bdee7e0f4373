import IvshmemSpec
import IvshmemSync

/// Several devices in one process over one shared memory: the in-process `PeerLink`, the way
/// a deterministic embedded event loop sits next to a real one. Doorbells are delivered
/// synchronously, so unit tests see their effect when the register write returns. It plays the
/// server's part too: lowest free IDs, state entry zeroed and departures announced on removal.
public final class LocalFabric: PeerLink, @unchecked Sendable {
    public let sharedMemory: SharedMemory
    public let template: DeviceConfiguration
    public let geometry: SharedMemoryGeometry
    private let tables: SpecTables
    private let devices = Locked<[UInt32: IvshmemDevice]>([:])

    /// `template` gives every device's parameters except `id`.
    public init(template: DeviceConfiguration, tables: SpecTables = .builtIn) throws {
        let profile = try Profile.named(template.profileName, in: tables)
        var probe = template
        probe.id = 0
        try probe.validate(profile: profile)
        geometry = try template.geometry()
        sharedMemory = try SharedMemory(allocating: Int(geometry.totalSize))
        self.template = template
        self.tables = tables
    }

    /// Adds a device with the lowest free ID (or `id`), like a server would. `configure` may
    /// change the configuration, but a joining device must match the link's N, V, section sizes
    /// and protocol (the two sides of a virtio protocol may differ in bit 14) and take an ID no
    /// active peer holds (DEV-CFG-8); a failed join adds nothing (DEV-CFG-9).
    public func addDevice(id: UInt32? = nil, configure: (inout DeviceConfiguration) -> Void = { _ in }) throws -> IvshmemDevice {
        var config = template
        let taken = devices.withLock { Set($0.keys) }
        if let id {
            config.id = id
        } else {
            guard let free = (0..<template.maxPeers).first(where: { !taken.contains($0) }) else {
                throw DeviceConfigurationError(parameter: "maxPeers", message: "all \(template.maxPeers) peer IDs are in use")
            }
            config.id = free
        }
        configure(&config)
        try checkJoin(config)
        let device = try IvshmemDevice(configuration: config, sharedMemory: sharedMemory, link: self, tables: tables)
        try devices.withLock { d in
            guard d[config.id] == nil else { throw DeviceConfigurationError(parameter: "id", message: "peer ID \(config.id) is already in use") }
            d[config.id] = device
        }
        return device
    }

    /// DEV-CFG-8: the parameters every peer of this link shares.
    private func checkJoin(_ c: DeviceConfiguration) throws {
        func mismatch(_ p: String, _ mine: Any, _ link: Any) -> DeviceConfigurationError {
            DeviceConfigurationError(parameter: p, message: "\(p) \(mine) does not match the link's \(link)")
        }
        guard c.maxPeers == template.maxPeers else { throw mismatch("maxPeers", c.maxPeers, template.maxPeers) }
        guard c.vectors == template.vectors else { throw mismatch("vectors", c.vectors, template.vectors) }
        if let st = c.stateTableSize, st != geometry.stateTableSize { throw mismatch("stateTableSize", st, geometry.stateTableSize) }
        guard c.rwSectionSize == template.rwSectionSize else { throw mismatch("rwSectionSize", c.rwSectionSize, template.rwSectionSize) }
        guard c.outputSectionSize == template.outputSectionSize else {
            throw mismatch("outputSectionSize", c.outputSectionSize, template.outputSectionSize)
        }
        guard IvshmemProtocol(c.protocolType).isCompatible(with: IvshmemProtocol(template.protocolType)) else {
            throw mismatch("protocolType", IvshmemProtocol(c.protocolType), IvshmemProtocol(template.protocolType))
        }
        guard c.id >= template.maxPeers || device(c.id) == nil else {
            throw DeviceConfigurationError(parameter: "id", message: "peer ID \(c.id) is already in use")
        }
    }

    /// Disconnects a device: its state entry becomes 0 (SHM-ST-3), then every remaining device
    /// hears of the departure (SRV-LEAVE-*, DEV-PEER-1).
    public func removeDevice(id: UInt32) {
        guard let removed = devices.withLock({ $0.removeValue(forKey: id) }) else { return }
        removed.detach()
        sharedMemory.storeState(peer: id, 0)
        for d in devices.withLock({ Array($0.values) }) { d.peerDeparted(id: id) }
    }

    public func device(_ id: UInt32) -> IvshmemDevice? { devices.withLock { $0[id] } }

    // MARK: PeerLink

    public func ring(from source: UInt32, target: UInt32, vector: UInt32) -> DoorbellOutcome {
        guard let d = device(target) else { return .inactiveTarget }
        guard Int(vector) < d.configuration.vectors else { return .noSuchVector(targetVectors: d.configuration.vectors) }
        d.receiveEvent(vector: Int(vector))
        return .delivered
    }

    public func broadcastStateChange(from source: UInt32) {
        let others = devices.withLock { $0.filter { $0.key != source }.sorted { $0.key < $1.key }.map(\.value) }
        for d in others { d.receiveEvent(vector: 0) }
    }

    public func isActive(_ peer: UInt32) -> Bool { device(peer) != nil }
}
