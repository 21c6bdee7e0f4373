/// `{u32 type, u32 len}` at the start of every message (WIRE-GEN-2); `len` counts the
/// header too.
public struct MessageHeader: Equatable, Hashable, Sendable {
    /// The raw type (it may be one the protocol does not define).
    public var type: UInt32
    /// The whole message's length in bytes, header included.
    public var length: UInt32

    public init(type: UInt32, length: UInt32) {
        self.type = type
        self.length = length
    }

    /// Parses the first 8 bytes of `bytes`, and checks the length can be framed:
    /// at least the header, at most ``WireConstants/maxMessageLength``.
    public init(parsing bytes: some Collection<UInt8>) throws(WireError) {
        let array = Array(bytes)
        guard array.count >= WireConstants.headerSize else { throw .truncatedHeader(received: array.count) }
        type = array.littleEndianUInt32(at: 0)
        length = array.littleEndianUInt32(at: 4)
        guard length >= UInt32(WireConstants.headerSize) else { throw .lengthBelowHeader(type: type, length: length) }
        guard length <= WireConstants.maxMessageLength else {
            throw .lengthTooLarge(type: type, length: length, limit: WireConstants.maxMessageLength)
        }
    }

    /// The header's 8 bytes as they go on the wire.
    public func encode() -> [UInt8] { le32(type) + le32(length) }

    /// The bytes of a message with an arbitrary header — any type, any `len`, whatever the
    /// body's real length: what a hostile peer or server sends to test the other side's checks.
    public static func rawMessage(type: UInt32, length: UInt32, body: [UInt8]) -> [UInt8] {
        MessageHeader(type: type, length: length).encode() + body
    }

    /// The known type, if it is one.
    public var messageType: MessageType? { MessageType(rawValue: type) }

    /// How many bytes follow the header.
    public var bodyLength: Int { Int(length) - WireConstants.headerSize }
}
