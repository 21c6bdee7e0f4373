/// Framing for a stream transport (WIRE-GEN-2, WIRE-GEN-3): read exactly one header, then exactly its
/// body, then the next header.
///
/// On a SOCK_STREAM UNIX socket, bytes without descriptors merge across messages, but
/// `recvmsg` never merges data across a message that carries descriptors. Asking for exactly
/// ``bytesWanted`` bytes at each step keeps each message's descriptor with its own bytes.
///
/// ```swift
/// var reader = MessageReader()
/// while true {
///     let chunk = try receive(atMost: reader.bytesWanted)   // keep the fds that came with it
///     if let frame = try reader.consume(chunk) { handle(frame, fds) }
/// }
/// ```
public struct MessageReader: Sendable {
    /// A complete message: its header and body bytes.
    public struct Frame: Equatable, Sendable {
        public var header: MessageHeader
        public var body: [UInt8]

        public init(header: MessageHeader, body: [UInt8]) {
            self.header = header
            self.body = body
        }

        /// Decodes it: INIT for a connection's first frame, otherwise EVENT_FD / PEER_GONE.
        public func decode(initial: Bool) throws(WireError) -> WireMessage {
            if initial { return .initial(try WireMessage.decodeInitial(header: header, body: body)) }
            return try WireMessage.decodeFollowing(header: header, body: body)
        }
    }

    private var headerBytes: [UInt8] = []
    private var header: MessageHeader?
    private var body: [UInt8] = []

    public init() {}

    /// How many bytes to read next: what is left of the header, or of the current body.
    public var bytesWanted: Int {
        if let header { return header.bodyLength - body.count }
        return WireConstants.headerSize - headerBytes.count
    }

    /// Whether a message is partly read (end of stream now would cut it).
    public var isInsideMessage: Bool { header != nil || !headerBytes.isEmpty }

    /// The header of the message being read, once it is complete.
    public var currentHeader: MessageHeader? { header }

    /// Takes bytes just read and returns a frame when one is complete. More than
    /// ``bytesWanted`` bytes is an error of the caller (it read past the header, or into the next
    /// message, so a descriptor may sit with the wrong message) and throws ``WireError/readTooLong(wanted:received:)``.
    /// A header with an impossible length throws: the stream cannot be framed after that.
    public mutating func consume(_ bytes: some Collection<UInt8>) throws(WireError) -> Frame? {
        let input = Array(bytes)
        guard input.count <= bytesWanted else { throw .readTooLong(wanted: bytesWanted, received: input.count) }
        if header == nil {
            headerBytes += input
            guard headerBytes.count == WireConstants.headerSize else { return nil }
            header = try MessageHeader(parsing: headerBytes)
            headerBytes.removeAll(keepingCapacity: true)
        } else {
            body += input
        }
        guard let current = header, body.count == current.bodyLength else { return nil }
        let frame = Frame(header: current, body: body)
        header = nil
        body = []
        return frame
    }
}
