/// The INIT message's fields (WIRE-INIT-1, WIRE-INIT-2): what a newcomer learns about the server's set-up.
public struct InitialInfo: Equatable, Hashable, Sendable {
    /// The server's protocol version (2).
    public var version: UInt32
    /// The oldest version the server is compatible with; a device requires 2.
    public var compatibleVersion: UInt32
    /// The id the server gave this peer.
    public var id: UInt32
    /// How many peers the server admits (and so how many output sections there are).
    public var maxPeers: UInt32
    /// Interrupt vectors (eventfds) per peer.
    public var vectors: UInt32
    /// The protocol the server advertises (with the virtio back-end bit set per peer).
    public var `protocol`: UInt32
    /// The size of each peer's output section in bytes.
    public var outputSectionSize: UInt64

    public init(version: UInt32 = WireConstants.protocolVersion,
                compatibleVersion: UInt32 = WireConstants.protocolVersion,
                id: UInt32, maxPeers: UInt32, vectors: UInt32, protocol: UInt32, outputSectionSize: UInt64) {
        self.version = version
        self.compatibleVersion = compatibleVersion
        self.id = id
        self.maxPeers = maxPeers
        self.vectors = vectors
        self.protocol = `protocol`
        self.outputSectionSize = outputSectionSize
    }
}

/// A message of the ivshmem v2 server protocol (spec §11; WIRE-GEN-1, WIRE-GEN-2). Little-endian; each starts with
/// `{u32 type, u32 len}`, `len` counting the header.
///
/// INIT travels with the shared-memory descriptor, EVENT_FD with one eventfd, PEER_GONE
/// with none: the descriptors are not part of this value (see ``carriesFileDescriptor``).
public enum WireMessage: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// Type 0, 40 bytes: the first message to a newcomer (WIRE-INIT-1, WIRE-SEQ-1).
    case initial(InitialInfo)
    /// Type 1, 16 bytes: peer `id`'s eventfd for `vector` (WIRE-EVT-1).
    case eventFD(id: UInt32, vector: UInt32)
    /// Type 2, 12 bytes: peer `id` left (WIRE-GONE-1).
    case peerGone(id: UInt32)

    public var type: MessageType {
        switch self {
        case .initial: return .initial
        case .eventFD: return .eventFD
        case .peerGone: return .peerGone
        }
    }

    /// Whether the sender attaches a descriptor (SCM_RIGHTS) to this message.
    public var carriesFileDescriptor: Bool { type != .peerGone }

    /// The bytes on the wire, header included.
    public func encode() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(type.minimumLength)
        bytes.appendLittleEndian(type.rawValue)
        bytes.appendLittleEndian(UInt32(type.minimumLength))
        switch self {
        case .initial(let info):
            bytes.appendLittleEndian(info.version)
            bytes.appendLittleEndian(info.compatibleVersion)
            bytes.appendLittleEndian(info.id)
            bytes.appendLittleEndian(info.maxPeers)
            bytes.appendLittleEndian(info.vectors)
            bytes.appendLittleEndian(info.protocol)
            bytes.appendLittleEndian(info.outputSectionSize)
        case .eventFD(let id, let vector):
            bytes.appendLittleEndian(id)
            bytes.appendLittleEndian(vector)
        case .peerGone(let id):
            bytes.appendLittleEndian(id)
        }
        return bytes
    }

    public var description: String {
        switch self {
        case .initial(let i):
            return "INIT(version \(i.version), compatible \(i.compatibleVersion), id \(i.id), max peers \(i.maxPeers), vectors \(i.vectors), protocol 0x\(String(i.protocol, radix: 16)), output section \(i.outputSectionSize))"
        case .eventFD(let id, let vector):
            return "EVENT_FD(id \(id), vector \(vector))"
        case .peerGone(let id):
            return "PEER_GONE(id \(id))"
        }
    }
}
