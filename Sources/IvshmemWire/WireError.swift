/// A message that breaks the ivshmem v2 protocol, with the values that break it.
/// The cases mirror the RFC device's checks (WIRE-CLI-1 … WIRE-CLI-6, WIRE-CLI-15, WIRE-CLI-16),
/// plus framing bounds.
public enum WireError: Error, Equatable, Hashable, Sendable, CustomStringConvertible {
    /// Fewer than 8 bytes where a header was expected (the stream ended).
    case truncatedHeader(received: Int)
    /// A header whose `len` is smaller than the header itself: the stream cannot be framed
    /// (WIRE-CLI-16: the link is treated as down).
    case lengthBelowHeader(type: UInt32, length: UInt32)
    /// A header whose `len` exceeds ``WireConstants/maxMessageLength``.
    case lengthTooLarge(type: UInt32, length: UInt32, limit: UInt32)
    /// The body handed to the decoder is not `len - 8` bytes long.
    case bodyLengthMismatch(expected: Int, received: Int)
    /// A caller handed the stream reader more bytes than it asked for.
    case readTooLong(wanted: Int, received: Int)
    /// The first message is not INIT (WIRE-CLI-1).
    case notInitial(type: UInt32)
    /// INIT again after the set-up (WIRE-CLI-16).
    case unexpectedType(MessageType)
    /// A type number the protocol does not define (WIRE-CLI-16).
    case unknownType(UInt32)
    /// A message shorter than its type's size (WIRE-CLI-1, WIRE-CLI-15).
    case messageTooShort(type: MessageType, length: UInt32, minimum: Int)
    /// INIT's compatible_version is not 2 (WIRE-CLI-3).
    case incompatibleVersion(compatibleVersion: UInt32, expected: UInt32)
    /// INIT's id above 65535 (WIRE-CLI-4).
    case peerIDAboveLimit(id: UInt32, limit: UInt32)
    /// INIT's id not below its max_peers (WIRE-CLI-4).
    case peerIDNotBelowMaxPeers(id: UInt32, maxPeers: UInt32)
    /// INIT's max_peers outside 2…65536 (WIRE-CLI-5).
    case maxPeersOutOfRange(maxPeers: UInt32, allowed: ClosedRange<UInt32>)
    /// INIT's vectors outside 1…1024 (WIRE-CLI-6).
    case vectorsOutOfRange(vectors: UInt32, allowed: ClosedRange<UInt32>)

    public var description: String {
        switch self {
        case .truncatedHeader(let n):
            return "message header truncated: received \(n) of \(WireConstants.headerSize) bytes"
        case .lengthBelowHeader(let type, let length):
            return "message type \(type) has length \(length), less than the \(WireConstants.headerSize)-byte header"
        case .lengthTooLarge(let type, let length, let limit):
            return "message type \(type) has length \(length), more than the \(limit) bytes a reader accepts"
        case .bodyLengthMismatch(let expected, let received):
            return "message body is \(received) bytes, the header announced \(expected)"
        case .readTooLong(let wanted, let received):
            return "read \(received) bytes where the message reader wanted at most \(wanted)"
        case .notInitial(let type):
            return "first message from the server has type \(type), expected INIT (0)"
        case .unexpectedType(let type):
            return "unexpected \(type) message after set-up"
        case .unknownType(let type):
            return "invalid message, type \(type)"
        case .messageTooShort(let type, let length, let minimum):
            return "\(type) message has length \(length), expected at least \(minimum)"
        case .incompatibleVersion(let v, let expected):
            return "server sent compatible version \(v), expecting \(expected)"
        case .peerIDAboveLimit(let id, let limit):
            return "server sent peer id \(id), above the limit \(limit)"
        case .peerIDNotBelowMaxPeers(let id, let maxPeers):
            return "server sent peer id \(id), not below its max peers \(maxPeers)"
        case .maxPeersOutOfRange(let maxPeers, let allowed):
            return "server sent max peers \(maxPeers), expected \(allowed.lowerBound)…\(allowed.upperBound)"
        case .vectorsOutOfRange(let vectors, let allowed):
            return "server sent \(vectors) vectors, expected \(allowed.lowerBound)…\(allowed.upperBound)"
        }
    }
}
