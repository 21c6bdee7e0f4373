import IvshmemHarness
import IvshmemPosix
import IvshmemWire
#if canImport(Glibc)
import Glibc
#endif

/// One message as a client received it: the raw header and body, and how many descriptors
/// came with it (the fixture's `type`, `len`, `body`, `nfds`).
struct ReceivedWireMessage: Equatable, CustomStringConvertible {
    var type: UInt32
    var length: UInt32
    var body: [UInt8]
    var fdCount: Int

    var bodyHex: String { body.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined() }
    var typeName: String { MessageType(rawValue: type)?.description ?? "type \(type)" }

    var description: String { "\(typeName) len \(length) body \(bodyHex) nfds \(fdCount)" }
}

/// A test client speaking the raw wire protocol over the harness's `RawWireClient` (which
/// reads exactly one header then its body, so each message keeps its own descriptors): records
/// every message and fd count, and keeps the shared memory and eventfds it receives (or closes
/// them at once, for scale runs).
final class RawClient {
    enum ClientError: Error, CustomStringConvertible {
        case timeout(expected: Int, received: [ReceivedWireMessage])
        case hungUp(received: [ReceivedWireMessage])
        var description: String {
            switch self {
            case .timeout(let n, let r): return "timed out waiting for \(n) messages; got \(r.count): \(r)"
            case .hungUp(let r): return "server hung up after \(r.count) messages: \(r)"
            }
        }
    }

    let name: String
    private let wire: RawWireClient
    var socket: FileDescriptor { wire.socket }
    private(set) var received: [ReceivedWireMessage] = []
    var hungUp: Bool { wire.closedByServer }
    /// The INIT fields, once INIT arrived.
    private(set) var initial: InitialInfo?
    /// The shared-memory descriptor from INIT (kept unless `keepDescriptors` is false).
    private(set) var sharedMemory: FileDescriptor?
    /// Eventfds by (peer id, vector), as received (kept unless `keepDescriptors` is false).
    private(set) var eventFDs: [PeerVector: EventFD] = [:]
    private var closed = false
    let keepDescriptors: Bool

    struct PeerVector: Hashable { var id: UInt32; var vector: UInt32 }

    init(name: String, path: String, keepDescriptors: Bool = true) throws {
        self.name = name
        self.keepDescriptors = keepDescriptors
        wire = try RawWireClient(name: name, socketPath: path, trace: TraceRecorder(capacity: 64))
    }

    deinit { close() }

    /// Waits until `count` more messages arrived (at most `timeout` seconds).
    @discardableResult
    func receive(_ count: Int, timeout: Double = 5) throws -> [ReceivedWireMessage] {
        let start = received.count
        let deadline = Monotonic.now() + timeout
        while received.count - start < count {
            let left = deadline - Monotonic.now()
            guard left > 0, let frame = try wire.nextFrame(timeout: left) else {
                if hungUp { throw ClientError.hungUp(received: Array(received[start...])) }
                throw ClientError.timeout(expected: count, received: Array(received[start...]))
            }
            record(frame)
        }
        return Array(received[start...])
    }

    /// Collects whatever arrives until nothing has come for `quiet` seconds.
    @discardableResult
    func receiveUntilQuiet(quiet: Double = 0.15) throws -> [ReceivedWireMessage] {
        let start = received.count
        while !hungUp, let frame = try wire.nextFrame(timeout: quiet) { record(frame) }
        return Array(received[start...])
    }

    /// Waits until the server closes the connection (end of file).
    func waitForHangUp(timeout: Double = 5) throws -> Bool {
        let deadline = Monotonic.now() + timeout
        while !hungUp {
            let left = deadline - Monotonic.now()
            guard left > 0 else { return false }
            if let frame = try wire.nextFrame(timeout: left) { record(frame) }
        }
        return true
    }

    /// Records one message and keeps (or closes) its descriptors.
    private func record(_ frame: RawWireClient.Frame) {
        let fds = frame.fds
        received.append(ReceivedWireMessage(type: frame.header.type, length: frame.header.length, body: frame.body, fdCount: fds.count))
        let decoded = MessageReader.Frame(header: frame.header, body: frame.body)
        guard keepDescriptors else {
            for fd in fds { fd.closeQuietly() }
            if initial == nil, case .initial(let i)? = try? decoded.decode(initial: true) { initial = i }
            return
        }
        if initial == nil, case .initial(let info)? = try? decoded.decode(initial: true) {
            initial = info
            sharedMemory = fds.first
            for fd in fds.dropFirst() { fd.closeQuietly() }
        } else if case .eventFD(let id, let vector)? = try? decoded.decode(initial: false), let fd = fds.first {
            eventFDs[PeerVector(id: id, vector: vector)]?.close()
            eventFDs[PeerVector(id: id, vector: vector)] = EventFD(fd: fd)
            for extra in fds.dropFirst() { extra.closeQuietly() }
        } else {
            for fd in fds { fd.closeQuietly() }
        }
    }

    /// Maps the whole shared memory received with INIT.
    func mapSharedMemory() throws -> MemoryMapping {
        guard let fd = sharedMemory else { throw ClientError.timeout(expected: 1, received: received) }
        return try MemoryMapping(fd: fd, size: try fd.size())
    }

    /// Writes bytes to the server (which must treat any data as a departure, SRV-GONE-1).
    func sendGarbage() throws { try wire.send([0x42]) }

    /// Closes the socket and every descriptor received.
    func close() {
        guard !closed else { return }
        closed = true
        wire.close()
        sharedMemory?.closeQuietly()
        sharedMemory = nil
        for (_, fd) in eventFDs { fd.close() }
        eventFDs = [:]
    }
}

/// 32-bit State Table and memory access on a mapping.
extension MemoryMapping {
    func load32(at offset: Int) -> UInt32 {
        base.loadUnaligned(fromByteOffset: offset, as: UInt32.self)
    }
    func store32(_ value: UInt32, at offset: Int) {
        base.storeBytes(of: value, toByteOffset: offset, as: UInt32.self)
    }
}
