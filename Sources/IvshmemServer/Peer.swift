import IvshmemPosix
import IvshmemWire

/// A connected peer as the server sees it.
final class Peer {
    /// The id it was given (SRV-ID-1).
    let id: UInt32
    /// A number unique for the server's lifetime: the epoll token, so a late event for a
    /// departed peer can never be taken for a newcomer that reuses its id or descriptor.
    let serial: UInt64
    /// The connected socket (non-blocking).
    let socket: FileDescriptor
    /// One eventfd per vector; the peer's doorbells (WIRE-EVT-1).
    var eventFDs: [OwnedDescriptor]
    /// Which protocol announces it.
    let dialect: ServerDialect
    /// Its eventfds as messages, encoded once and queued to every peer that must learn them:
    /// EVENT_FD(id, 0…V−1) (WIRE-SEQ-2 … WIRE-SEQ-4), or its ID V times with an eventfd each
    /// (V1-WIRE-SEQ-4 … V1-WIRE-SEQ-6).
    lazy var announcements: [OutgoingMessage] = eventFDs.enumerated().map { vector, fd in
        switch dialect {
        case .v2: return OutgoingMessage(.eventFD(id: id, vector: UInt32(vector)), attachment: fd)
        case .v1: return OutgoingMessage(V1ServerMessage.eventFD(id: UInt16(id), vector: vector), attachment: fd)
        }
    }
    /// Messages not yet taken by the socket (SRV-IO-1).
    var queue = OutgoingQueue()
    /// Whether epoll also reports writability (only while the queue is stuck).
    var watchingWritable = false
    /// Set once it is leaving, so that it is freed exactly once.
    var departing = false

    init(id: UInt32, serial: UInt64, socket: FileDescriptor, eventFDs: [OwnedDescriptor], dialect: ServerDialect = .v2) {
        self.id = id
        self.dialect = dialect
        self.serial = serial
        self.socket = socket
        self.eventFDs = eventFDs
    }
}
