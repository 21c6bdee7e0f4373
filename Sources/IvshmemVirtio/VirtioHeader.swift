/// The virtio-over-ivshmem header at the start of the R/W section (spec/virtio-ivshmem.md §3,
/// VIRTIO-HDR-1): every field little-endian, at these offsets.
public enum VirtioHeader {
    public static let revision = 0              // u32
    public static let size = 4                  // u32: header + device config
    public static let writeTransaction = 8      // u32: offset of the register being written, 0 when idle
    public static let deviceFeatures = 12       // u32: the word device_features_sel selects
    public static let deviceFeaturesSel = 16    // u32
    public static let driverFeatures = 20       // u32
    public static let driverFeaturesSel = 24    // u32
    public static let queueSel = 28             // u32
    public static let queueSize = 32            // u16
    public static let queueDeviceVector = 34    // u16: the back-end's vector the front-end rings to kick
    public static let queueDriverVector = 36    // u16: the front-end's vector the back-end rings
    public static let queueEnable = 38          // u16
    public static let queueDesc = 40            // u64: R/W-section offset of the descriptor table
    public static let queueDriver = 48          // u64: of the available ring
    public static let queueDevice = 56          // u64: of the used ring
    public static let configEvent = 64          // u8
    public static let queueEvent = 65           // u8
    public static let deviceStatus = 68         // u32
    public static let configGeneration = 72     // u32: odd while the back-end updates the config
    public static let config = 76               // device-specific configuration

    /// The revision this implementation writes and the lowest it accepts (VIRTIO-HDR-2).
    public static let currentRevision: UInt32 = 1

    /// Width of the register at `offset`, or nil when no register starts there (config bytes
    /// are written 1, 2, 4 or 8 at a time, VIRTIO-CFG-2).
    public static func registerWidth(at offset: Int) -> Int? {
        switch offset {
        case revision, size, writeTransaction, deviceFeatures, deviceFeaturesSel, driverFeatures, driverFeaturesSel, queueSel,
             deviceStatus, configGeneration: return 4
        case queueSize, queueDeviceVector, queueDriverVector, queueEnable: return 2
        case queueDesc, queueDriver, queueDevice: return 8
        case configEvent, queueEvent: return 1
        default: return nil
        }
    }

    /// The field's name in the header, for messages.
    public static func name(of offset: Int) -> String {
        let names: [Int: String] = [
            revision: "revision", size: "size", writeTransaction: "write_transaction", deviceFeatures: "device_features",
            deviceFeaturesSel: "device_features_sel", driverFeatures: "driver_features", driverFeaturesSel: "driver_features_sel",
            queueSel: "queue_sel", queueSize: "queue_size", queueDeviceVector: "queue_device_vector",
            queueDriverVector: "queue_driver_vector", queueEnable: "queue_enable", queueDesc: "queue_desc",
            queueDriver: "queue_driver", queueDevice: "queue_device", configEvent: "config_event", queueEvent: "queue_event",
            deviceStatus: "device_status", configGeneration: "config_generation",
        ]
        if let n = names[offset] { return n }
        return offset >= config ? "config+0x\(String(offset - config, radix: 16))" : "offset 0x\(String(offset, radix: 16))"
    }
}

/// Device status bits (virtio 1.x §2.1).
public struct VirtioStatus: OptionSet, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let acknowledge = VirtioStatus(rawValue: 1)
    public static let driver = VirtioStatus(rawValue: 2)
    public static let driverOK = VirtioStatus(rawValue: 4)
    public static let featuresOK = VirtioStatus(rawValue: 8)
    public static let needsReset = VirtioStatus(rawValue: 0x40)
    public static let failed = VirtioStatus(rawValue: 0x80)
    public var description: String { "0x" + String(rawValue, radix: 16) }
}

/// Transport feature bits (virtio 1.x §6) this transport uses.
public enum VirtioFeature {
    /// VIRTIO_F_VERSION_1, bit 32: required on both sides (VIRTIO-FEAT-3).
    public static let version1: UInt64 = 1 << 32
    /// VIRTIO_F_ACCESS_PLATFORM, bit 33: addresses are translated (here: R/W-section offsets).
    public static let accessPlatform: UInt64 = 1 << 33
    /// VIRTIO_F_ORDER_PLATFORM, bit 36.
    public static let orderPlatform: UInt64 = 1 << 36
    /// What every back-end of this library offers besides its device features (as Jailhouse's do).
    public static let transport: UInt64 = version1 | accessPlatform | orderPlatform
}

/// Virtio device IDs of the devices here (virtio 1.x §5).
public enum VirtioDeviceID {
    public static let block: UInt16 = 2
    public static let console: UInt16 = 3

    /// The device ID a virtio protocol number carries (VIRTIO-LINK-2): its low 14 bits, the
    /// same on both sides (bit 14 tells the back-end from the front-end, bit 15 marks virtio).
    public static func of(protocol value: UInt16) -> UInt16 { value & 0x3FFF }
}
