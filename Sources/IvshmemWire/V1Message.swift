/// One message of the ivshmem v1 server protocol (spec/ivshmem1.md §6): an 8-byte
/// little-endian signed integer, sent with at most one descriptor (V1-WIRE-GEN-1). What it
/// means depends on its place in the stream and on whether a descriptor came with it; see
/// ``V1Introduction`` for the client's reading and ``V1ServerMessage`` for what a server sends.
public enum V1Message {
    /// Every message is exactly this long.
    public static let size = 8
    /// The protocol version a v1 server sends first (V1-WIRE-SEQ-1).
    public static let protocolVersion: Int64 = 0
    /// The value that travels with the shared-memory descriptor (V1-WIRE-SEQ-3).
    public static let sharedMemory: Int64 = -1
    /// The highest peer ID (IDs are 16-bit, V1-WIRE-SEQ-2).
    public static let maxPeerID: Int64 = 65535
    /// The most vectors the reference server hands out per peer (V1-SRV-CFG-2).
    public static let maxVectors = 64

    /// The bytes of `value` on the wire.
    public static func encode(_ value: Int64) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(size)
        bytes.appendLittleEndian(UInt64(bitPattern: value))
        return bytes
    }

    /// The value of exactly ``size`` bytes.
    public static func decode(_ bytes: some Collection<UInt8>) throws(V1WireError) -> Int64 {
        let array = Array(bytes)
        guard array.count == size else { throw .truncated(received: array.count) }
        return Int64(bitPattern: array.littleEndianUInt64(at: 0))
    }
}

/// What a v1 server sends, by meaning (V1-WIRE-SEQ-1 … V1-WIRE-GONE-1).
public enum V1ServerMessage: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// The protocol version, without a descriptor (V1-WIRE-SEQ-1).
    case version
    /// The newcomer's own ID, without a descriptor (V1-WIRE-SEQ-2).
    case ownID(UInt16)
    /// −1 with the shared-memory descriptor (V1-WIRE-SEQ-3).
    case sharedMemory
    /// A peer's ID with one of its eventfds (V1-WIRE-SEQ-4 … V1-WIRE-SEQ-6); `vector` is implied by
    /// the order and kept here only for logs.
    case eventFD(id: UInt16, vector: Int)
    /// A peer's ID without a descriptor: it left (V1-WIRE-GONE-1).
    case peerGone(id: UInt16)

    /// The integer on the wire.
    public var value: Int64 {
        switch self {
        case .version: return V1Message.protocolVersion
        case .ownID(let id), .eventFD(let id, _), .peerGone(let id): return Int64(id)
        case .sharedMemory: return V1Message.sharedMemory
        }
    }

    /// Whether a descriptor goes with it.
    public var carriesFileDescriptor: Bool {
        switch self {
        case .sharedMemory, .eventFD: return true
        case .version, .ownID, .peerGone: return false
        }
    }

    public func encode() -> [UInt8] { V1Message.encode(value) }

    public var description: String {
        switch self {
        case .version: return "v1 VERSION(0)"
        case .ownID(let id): return "v1 ID(\(id))"
        case .sharedMemory: return "v1 SHM(-1, fd)"
        case .eventFD(let id, let vector): return "v1 EVENTFD(id \(id), vector \(vector), fd)"
        case .peerGone(let id): return "v1 GONE(id \(id))"
        }
    }
}
