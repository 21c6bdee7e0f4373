import IvshmemSpec
import Synchronization

/// Several devices in one process over one shared memory: the in-process `PeerLink`, the way
/// a deterministic embedded event loop sits next to a real one. Doorbells are delivered
/// synchronously, so unit tests see their effect when the register write returns. It plays the
/// server's part too: lowest free IDs, state entry zeroed and departures announced on removal.
public final class LocalFabric: PeerLink, @unchecked Sendable {
    public let sharedMemory: SharedMemory
    public let template: DeviceConfiguration
    public let geometry: SharedMemoryGeometry
    private let tables: SpecTables
    private let devices = Mutex<[UInt32: IvshmemDevice]>([:])

    /// `template` gives every device's parameters except `id`.
    public init(template: DeviceConfiguration, tables: SpecTables = .builtIn) throws {
        let profile = try Profile.named(template.profileName, in: tables)
        var probe = template
        probe.id = 0
        try probe.validate(profile: profile)
        geometry = try template.geometry()
        sharedMemory = SharedMemory(allocating: Int(geometry.totalSize))
        self.template = template
        self.tables = tables
    }

    /// Adds a device with the lowest free ID (or `id`), like a server would.
    public func addDevice(id: UInt32? = nil, configure: (inout DeviceConfiguration) -> Void = { _ in }) throws -> IvshmemDevice {
        var config = template
        let taken = devices.withLock { Set($0.keys) }
        if let id {
            guard !taken.contains(id) else { throw DeviceConfigurationError(parameter: "id", message: "peer ID \(id) is already in use") }
            config.id = id
        } else {
            guard let free = (0..<template.maxPeers).first(where: { !taken.contains($0) }) else {
                throw DeviceConfigurationError(parameter: "maxPeers", message: "all \(template.maxPeers) peer IDs are in use")
            }
            config.id = free
        }
        configure(&config)
        let device = try IvshmemDevice(configuration: config, sharedMemory: sharedMemory, link: self, tables: tables)
        devices.withLock { $0[config.id] = device }
        return device
    }

    /// Disconnects a device: its state entry becomes 0 (SHM-ST-3), then every remaining device
    /// hears of the departure (SRV-LEAVE-*, DEV-PEER-1).
    public func removeDevice(id: UInt32) {
        guard devices.withLock({ $0.removeValue(forKey: id) }) != nil else { return }
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
