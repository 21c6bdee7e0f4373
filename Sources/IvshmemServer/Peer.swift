import IvshmemPosix

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
    /// EVENT_FD(id, 0…V−1) with its eventfds, encoded once and queued to every peer that must
    /// learn them (WIRE-SEQ-2 … WIRE-SEQ-4).
    lazy var announcements: [OutgoingMessage] = eventFDs.enumerated().map { vector, fd in
        OutgoingMessage(.eventFD(id: id, vector: UInt32(vector)), attachment: fd)
    }
    /// Messages not yet taken by the socket (SRV-IO-1).
    var queue = OutgoingQueue()
    /// Whether epoll also reports writability (only while the queue is stuck).
    var watchingWritable = false
    /// Set once it is leaving, so that it is freed exactly once.
    var departing = false

    init(id: UInt32, serial: UInt64, socket: FileDescriptor, eventFDs: [OwnedDescriptor]) {
        self.id = id
        self.serial = serial
        self.socket = socket
        self.eventFDs = eventFDs
    }
}
