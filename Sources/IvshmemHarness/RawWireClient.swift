import IvshmemPosix
import IvshmemWire

/// A client that speaks the server protocol at the message level and records what it gets:
/// for checking a server (ours or the reference one) in scripts and the conformance suite.
public final class RawWireClient: @unchecked Sendable {
    public let name: String
    /// The connection (for checks that act on the socket itself, e.g. shutdown).
    public let socket: FileDescriptor
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

    /// One message as it arrived: header, body, the descriptors that came with it (the caller
    /// owns them), and whether they all came with the message's first byte (WIRE-GEN-3).
    public struct Frame: Sendable {
        public var header: MessageHeader
        public var body: [UInt8]
        public var fds: [FileDescriptor]
        public var fdsWithFirstByte: Bool
    }

    private var atMessageStart = true
    private var lateFDs = false

    /// The next complete message within `timeout` seconds, undecoded; nil on timeout or when the
    /// server closed the connection (`closedByServer` tells which).
    public func nextFrame(timeout: Double) throws -> Frame? {
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
            if !atMessageStart && !m.fds.isEmpty { lateFDs = true }
            atMessageStart = false
            pendingFDs += m.fds
            if let frame = try reader.consume(m.bytes) {
                defer {
                    pendingFDs.removeAll()
                    atMessageStart = true
                    lateFDs = false
                }
                return Frame(header: frame.header, body: frame.body, fds: pendingFDs, fdsWithFirstByte: !lateFDs)
            }
        }
    }

    /// The next complete message within `timeout` seconds, decoded; nil on timeout or when the
    /// server closed the connection (`closedByServer` tells which). Received fds are closed
    /// after counting.
    public func next(timeout: Double) throws -> Received? {
        guard let f = try nextFrame(timeout: timeout) else { return nil }
        for fd in f.fds { fd.closeQuietly() }
        let msg = try MessageReader.Frame(header: f.header, body: f.body).decode(initial: first)
        first = false
        let r = Received(message: msg, fdCount: f.fds.count)
        trace.record(name, .wire, detail: "received \(r)")
        return r
    }

    /// Sends raw bytes (any data from a peer makes the server drop it: SRV-GONE-1).
    public func send(_ bytes: [UInt8]) throws {
        trace.record(name, .wire, detail: "sent \(bytes.count) byte(s)")
        _ = try UnixSocket.sendMessage(on: socket, bytes: bytes)
    }
}
