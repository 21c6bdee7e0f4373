/// Numbers of the ivshmem v2 server protocol (spec §11, WIRE-*), from the RFC device's
/// `include/hw/misc/ivshmem2.h` and what the RFC device accepts.
public enum WireConstants {
    /// `IVSHMEM_PROTOCOL_VERSION`: what our server sends as version and compatible version,
    /// and the only compatible version a device accepts.
    public static let protocolVersion: UInt32 = 2
    /// `{u32 type, u32 len}`.
    public static let headerSize = 8
    /// INIT: header + version, compatible_version, id, max_peers, vectors, protocol (u32 each)
    /// + output_section_size (u64).
    public static let initialInfoSize = 40
    /// EVENT_FD: header + id + vector.
    public static let eventFDSize = 16
    /// PEER_GONE: header + id.
    public static let peerGoneSize = 12
    /// The highest peer id a device accepts (ids are 16-bit, WIRE-CLI-4).
    public static let maxPeerID: UInt32 = 65535
    /// The max_peers a device accepts: 2…65536 (WIRE-CLI-5).
    public static let maxPeersRange: ClosedRange<UInt32> = 2...65536
    /// The vectors a device accepts: 1…1024 (WIRE-CLI-6).
    public static let vectorRange: ClosedRange<UInt32> = 1...1024
    /// The longest message a reader accepts. The RFC device skips any extra INIT bytes; we
    /// still bound a message so a corrupt length cannot make a reader allocate gigabytes.
    public static let maxMessageLength: UInt32 = 64 * 1024
    /// Protocols from this value up are virtio: peer 0 is the back-end (bit 0x4000 set),
    /// the others front-ends (bit clear).
    public static let virtioProtocolBase: UInt32 = 0x8000
    /// The back-end bit of a virtio protocol.
    public static let virtioBackendBit: UInt32 = 0x4000
}

/// The `type` field of a message header.
public enum MessageType: UInt32, Sendable, CustomStringConvertible {
    case initial = 0
    case eventFD = 1
    case peerGone = 2

    /// The size a message of this type has (and the least a reader accepts).
    public var minimumLength: Int {
        switch self {
        case .initial: return WireConstants.initialInfoSize
        case .eventFD: return WireConstants.eventFDSize
        case .peerGone: return WireConstants.peerGoneSize
        }
    }

    public var description: String {
        switch self {
        case .initial: return "INIT"
        case .eventFD: return "EVENT_FD"
        case .peerGone: return "PEER_GONE"
        }
    }
}
