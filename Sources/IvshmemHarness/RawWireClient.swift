import IvshmemPosix
import IvshmemWire

/// A client that speaks the server protocol at the message level and records what it gets:
/// for checking a server (ours or the reference one) in scripts and the conformance suite.
public final class RawWireClient: @unchecked Sendable {
    public let name: String
    private let socket: FileDescriptor
    private var reader = MessageReader()
    private var pendingFDs: [FileDescriptor] = []
    private(set) public var closedByServer = false
    private var first = true
    private let trace: TraceRecorder

    /// One received message and how many fds came with it.
    public struct Received: Sendable, Equatable, CustomStringConvertible {
        public var message: WireMessage
        public var fdCount: Int
        public var description: String { "\(message) with \(fdCount) fd(s)" }
    }

    public init(name: String, socketPath: String, trace: TraceRecorder) throws {
        self.name = name
        self.trace = trace
        socket = try UnixSocket.connect(path: socketPath)
        try socket.setNonBlocking(true)
        trace.record(name, .lifecycle, detail: "raw client connected")
    }

    deinit { close() }

    private var closed = false

    /// Idempotent: the socket number is closed once.
    public func close() {
        guard !closed else { return }
        closed = true
        for fd in pendingFDs { fd.closeQuietly() }
        pendingFDs.removeAll()
        socket.closeQuietly()
    }

    /// The next complete message within `timeout` seconds; nil on timeout or when the server
    /// closed the connection (`closedByServer` tells which). Received fds are closed after counting.
    public func next(timeout: Double) throws -> Received? {
        let deadline = Monotonic.now() + timeout
        while true {
            let m: ReceivedMessage
            do {
                m = try UnixSocket.receiveMessage(on: socket, maxBytes: max(reader.bytesWanted, 1), maxFDs: 8)
            } catch let e as SystemCallError where e.errno == .wouldBlock {
                let left = deadline - Monotonic.now()
                if left <= 0 { return nil }
                _ = try socket.waitReadable(timeoutMilliseconds: Int32(max(1, min(left, 1) * 1000)))
                continue
            } catch let e as SystemCallError where e.errno == .connectionReset {
                closedByServer = true
                return nil
            }
            if m.bytes.isEmpty {
                for fd in m.fds { fd.closeQuietly() }
                closedByServer = true
                trace.record(name, .wire, detail: "server closed the connection")
                return nil
            }
            pendingFDs += m.fds
            if let frame = try reader.consume(m.bytes) {
                let fds = pendingFDs
                pendingFDs.removeAll()
                for fd in fds { fd.closeQuietly() }
                let msg = try frame.decode(initial: first)
                first = false
                let r = Received(message: msg, fdCount: fds.count)
                trace.record(name, .wire, detail: "received \(r)")
                return r
            }
        }
    }

    /// Sends raw bytes (any data from a peer makes the server drop it: SRV-GONE-1).
    public func send(_ bytes: [UInt8]) throws {
        trace.record(name, .wire, detail: "sent \(bytes.count) byte(s)")
        _ = try UnixSocket.sendMessage(on: socket, bytes: bytes)
    }
}
