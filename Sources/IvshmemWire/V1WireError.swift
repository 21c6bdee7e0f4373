/// A v1 message a device refuses, with the values that break the protocol
/// (V1-WIRE-CLI-1 … V1-WIRE-CLI-6).
public enum V1WireError: Error, Equatable, Hashable, Sendable, CustomStringConvertible {
    /// Fewer than 8 bytes where a message was expected (the stream ended).
    case truncated(received: Int)
    /// The first message is not version 0 without a descriptor (V1-WIRE-CLI-1).
    case badVersion(value: Int64, withDescriptor: Bool)
    /// The second message is not an ID in 0…65535 without a descriptor (V1-WIRE-CLI-2).
    case badOwnID(value: Int64, withDescriptor: Bool)
    /// A value below −1 or above 65535 (V1-WIRE-CLI-3).
    case valueOutOfRange(Int64)
    /// −1 without the shared-memory descriptor.
    case sharedMemoryWithoutDescriptor
    /// A second shared-memory message (V1-WIRE-CLI-4).
    case secondSharedMemory
    /// An eventfd for a peer that already sent as many as the device has vectors (V1-WIRE-CLI-5).
    case tooManyEventFDs(id: UInt16, vectors: Int)
    /// A departure of the device's own ID (V1-WIRE-CLI-6).
    case departureOfSelf(id: UInt16)
    /// A departure of an ID the device holds no eventfds for (V1-WIRE-CLI-6).
    case departureOfUnknownPeer(id: UInt16)

    public var description: String {
        switch self {
        case .truncated(let n): return "v1 message truncated: \(n) of 8 bytes"
        case .badVersion(let v, let fd): return "v1 server sent version \(v)\(fd ? " with a descriptor" : ""), expected 0 without a descriptor"
        case .badOwnID(let v, let fd): return "v1 server sent an invalid ID message: \(v)\(fd ? " with a descriptor" : ""), expected 0…65535 without a descriptor"
        case .valueOutOfRange(let v): return "v1 server sent invalid message \(v) (valid: -1…65535)"
        case .sharedMemoryWithoutDescriptor: return "v1 server sent -1 without the shared-memory descriptor"
        case .secondSharedMemory: return "v1 server sent a second shared-memory message"
        case .tooManyEventFDs(let id, let v): return "v1 server sent more eventfds for peer \(id) than the device's \(v) vectors"
        case .departureOfSelf(let id): return "v1 server announced the departure of this device's own ID \(id)"
        case .departureOfUnknownPeer(let id): return "v1 server announced the departure of peer \(id), which has no eventfds"
        }
    }
}
