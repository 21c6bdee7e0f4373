/// A v1 device's reading of its server's stream (spec/ivshmem1.md §6): the first message must
/// be the version, the second the device's ID; after that −1 brings the shared memory, an ID
/// with a descriptor the next eventfd of that peer, an ID without one its departure. Like
/// QEMU, eventfds may arrive before the shared memory; the order of the reference server is
/// version, ID, shared memory, other peers, own eventfds (V1-WIRE-SEQ-1 … V1-WIRE-SEQ-6).
///
/// The caller owns the descriptors: when ``consume(_:withDescriptor:)`` throws, it closes the
/// one that came with the message (V1-WIRE-CLI-3 … V1-WIRE-CLI-5).
public struct V1Introduction: Sendable {
    /// What one message meant.
    public enum Event: Equatable, Sendable {
        case version
        case ownID(UInt16)
        case sharedMemory
        /// Peer `id`'s eventfd for `vector` (the N-th for an ID is vector N−1).
        case eventFD(id: UInt16, vector: Int)
        /// Peer `id` left; its eventfds are to be closed (V1-WIRE-CLI-7).
        case peerGone(id: UInt16)
    }

    /// The device's own vector count (QEMU's `vectors` property): not announced by the server
    /// (V1-WIRE-CLI-5).
    public let vectors: Int
    /// The ID the server gave this device, once the second message arrived.
    public private(set) var ownID: UInt16?
    /// Whether the shared-memory descriptor arrived.
    public private(set) var hasSharedMemory = false
    private var messagesSeen = 0
    private var eventFDs: [UInt16: Int] = [:]

    public init(vectors: Int) {
        self.vectors = vectors
    }

    /// How many eventfds peer `id` has (0 for an unknown or departed peer).
    public func eventFDCount(of id: UInt16) -> Int { eventFDs[id] ?? 0 }

    /// The peers with at least one eventfd, own ID included, in ID order.
    public var knownPeers: [UInt16] { eventFDs.keys.sorted() }

    /// Attach is complete once the shared memory and all of the own eventfds arrived
    /// (V1-WIRE-CLI-8).
    public var isComplete: Bool {
        guard hasSharedMemory, let ownID else { return false }
        return eventFDCount(of: ownID) == vectors
    }

    /// Interprets one message; throws (changing nothing) for one the device refuses.
    public mutating func consume(_ value: Int64, withDescriptor: Bool) throws(V1WireError) -> Event {
        switch messagesSeen {
        case 0:
            guard value == V1Message.protocolVersion, !withDescriptor else {
                throw .badVersion(value: value, withDescriptor: withDescriptor)
            }
            messagesSeen = 1
            return .version
        case 1:
            guard !withDescriptor, (0...V1Message.maxPeerID).contains(value) else {
                throw .badOwnID(value: value, withDescriptor: withDescriptor)
            }
            messagesSeen = 2
            ownID = UInt16(value)
            return .ownID(UInt16(value))
        default:
            break
        }
        guard (V1Message.sharedMemory...V1Message.maxPeerID).contains(value) else { throw .valueOutOfRange(value) }
        if value == V1Message.sharedMemory {
            guard withDescriptor else { throw .sharedMemoryWithoutDescriptor }
            guard !hasSharedMemory else { throw .secondSharedMemory }
            hasSharedMemory = true
            return .sharedMemory
        }
        let id = UInt16(value)
        if withDescriptor {
            let count = eventFDCount(of: id)
            guard count < vectors else { throw .tooManyEventFDs(id: id, vectors: vectors) }
            eventFDs[id] = count + 1
            return .eventFD(id: id, vector: count)
        }
        guard id != ownID else { throw .departureOfSelf(id: id) }
        guard eventFDs.removeValue(forKey: id) != nil else { throw .departureOfUnknownPeer(id: id) }
        return .peerGone(id: id)
    }
}
