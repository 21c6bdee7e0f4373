import IvshmemPosix
import IvshmemWire

/// One message waiting to be sent, encoded once, with the descriptor it carries. A class, so
/// that the same message (a newcomer's eventfd for every peer) is queued to many peers
/// without copying or re-encoding.
final class OutgoingMessage {
    /// What the message says, in either protocol (for logs).
    enum Content: CustomStringConvertible {
        case v2(WireMessage)
        case v1(V1ServerMessage)

        var description: String {
            switch self {
            case .v2(let message): return message.description
            case .v1(let message): return message.description
            }
        }
    }

    let message: Content
    let bytes: [UInt8]
    let attachment: OwnedDescriptor?
    let fds: [FileDescriptor]

    init(_ message: WireMessage, attachment: OwnedDescriptor?) {
        self.message = .v2(message)
        self.bytes = message.encode()
        self.attachment = attachment
        self.fds = attachment.map { [$0.fd] } ?? []
    }

    /// A v1 message (V1-WIRE-GEN-1).
    init(_ message: V1ServerMessage, attachment: OwnedDescriptor?) {
        self.message = .v1(message)
        self.bytes = message.encode()
        self.attachment = attachment
        self.fds = attachment.map { [$0.fd] } ?? []
    }
}

/// A peer's messages in the order they were queued (SRV-IO-2), sent without blocking
/// (SRV-IO-1). A stream socket may take part of a message: its descriptor goes with the
/// first byte, and the rest follows later without it.
struct OutgoingQueue {
    private var messages: [OutgoingMessage?] = []
    private var head = 0
    /// Bytes of the head message already sent (its descriptor went with the first of them).
    private var headOffset = 0
    /// Descriptors referenced by the messages still queued (SRV-IO-4).
    private(set) var descriptorCount = 0

    var count: Int { messages.count - head }
    var isEmpty: Bool { count == 0 }

    mutating func append(_ message: OutgoingMessage) {
        messages.append(message)
        descriptorCount += message.fds.count
    }

    /// What stopped a flush.
    enum FlushResult {
        /// Everything was sent.
        case drained
        /// The socket buffer is full: wait until it is writable.
        case wouldBlock
        /// Too many descriptors in flight for this user (ETOOMANYREFS): try again later.
        case descriptorsInFlight
        /// The peer is gone or the socket failed.
        case failed(SystemCallError)
    }

    /// Sends as much as the socket takes. `sent` is called for each message fully sent.
    mutating func flush(to socket: FileDescriptor, sent: (OutgoingMessage) -> Void) -> FlushResult {
        while head < messages.count {
            guard let item = messages[head] else { head += 1; headOffset = 0; continue }
            do {
                let offset = headOffset
                let n = try item.bytes.withUnsafeBytes { all in
                    // The descriptor goes with the first byte only.
                    try UnixSocket.sendMessage(on: socket, buffer: UnsafeRawBufferPointer(rebasing: all[offset...]),
                                               fds: offset == 0 ? item.fds : [])
                }
                headOffset += n
                if headOffset >= item.bytes.count {
                    sent(item)
                    descriptorCount -= item.fds.count
                    messages[head] = nil  // release the descriptor now
                    head += 1
                    headOffset = 0
                }
            } catch let error as SystemCallError {
                if error.errno == .wouldBlock { return .wouldBlock }
                if error.errno == .tooManyReferences { return .descriptorsInFlight }
                return .failed(error)
            } catch {
                return .failed(SystemCallError(call: "sendmsg", errno: .invalidArgument, detail: "\(error)"))
            }
        }
        messages.removeAll(keepingCapacity: messages.count <= 1024)
        head = 0
        return .drained
    }

    /// Drops everything (the peer left); descriptors are released with the messages.
    mutating func removeAll() {
        messages.removeAll()
        head = 0
        headOffset = 0
        descriptorCount = 0
    }
}
