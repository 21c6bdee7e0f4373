import Foundation
import IvshmemModel
import IvshmemPosix
import IvshmemServer
import IvshmemSpec
import IvshmemTransport
import IvshmemWire
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Support shared by the wire and server checks

/// Fails a check unless `condition` holds.
func require(_ condition: @autoclosure () throws -> Bool, _ expected: @autoclosure () -> String, _ actual: @autoclosure () -> String) throws {
    if !(try condition()) { throw CheckFailure(expected: expected(), actual: actual()) }
}

func hex(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined() }

/// What `/proc/self/fd/N` points at (e.g. `anon_inode:[eventfd]`).
func descriptorTarget(_ fd: FileDescriptor) -> String { (try? FileSystem.readLink("/proc/self/fd/\(fd.rawValue)")) ?? "?" }

/// A wire client that keeps the descriptors it receives and the raw bytes of each message:
/// for checks that look below what `RawWireClient` reports (lengths, fd placement, fd use).
final class FDWireClient: @unchecked Sendable {
    struct Message {
        var header: MessageHeader
        var body: [UInt8]
        var fds: [FileDescriptor]
        /// Whether every fd came with the recvmsg that returned the message's first byte.
        var fdsWithFirstByte: Bool
        var rawBytes: [UInt8] { header.encode() + body }
        var typeName: String { header.messageType.map { "\($0)" } ?? "type \(header.type)" }
    }
    private let client: RawWireClient
    var socket: FileDescriptor { client.socket }
    var closedByServer: Bool { client.closedByServer }
    /// Every fd received and not yet closed (closed by `close()`).
    private(set) var kept: [FileDescriptor] = []

    init(path: String) throws {
        client = try RawWireClient(name: "check", socketPath: path, trace: TraceRecorder())
    }

    deinit { close() }

    func close() {
        for fd in kept { fd.closeQuietly() }
        kept.removeAll()
        client.close()
    }

    /// The next message within `timeout`, nil on timeout or end of file (`closedByServer`).
    func next(timeout: Double = 5) throws -> Message? {
        guard let f = try client.nextFrame(timeout: timeout) else { return nil }
        kept += f.fds
        return Message(header: f.header, body: f.body, fds: f.fds, fdsWithFirstByte: f.fdsWithFirstByte)
    }

    /// The next message decoded (`initial`: as the first message of a connection).
    func nextDecoded(initial: Bool = false, timeout: Double = 5) throws -> (WireMessage, Message)? {
        guard let m = try next(timeout: timeout) else { return nil }
        let decoded: WireMessage
        if initial { decoded = .initial(try WireMessage.decodeInitial(header: m.header, body: m.body)) } else {
            decoded = try WireMessage.decodeFollowing(header: m.header, body: m.body)
        }
        return (decoded, m)
    }

    /// The next message, or a failure naming what was awaited.
    private func required(_ what: String, timeout: Double) throws -> Message {
        guard let m = try next(timeout: timeout) else {
            throw CheckFailure(expected: what, actual: closedByServer ? "the server closed the connection" : "nothing within \(timeout) s")
        }
        return m
    }

    /// The whole introduction of a newcomer, read to its end rather than until a quiet
    /// period (which a busy machine can stretch): INIT, the eventfds of every peer already
    /// connected, and its own V eventfds, which come last (WIRE-SEQ-1 to WIRE-SEQ-4).
    func takeIntroduction(timeout: Double = 10) throws -> [Message] {
        let first = try required("INIT", timeout: timeout)
        guard let info = try? WireMessage.decodeInitial(header: first.header, body: first.body) else {
            throw CheckFailure(expected: "INIT", actual: "\(first.typeName) len \(first.header.length)")
        }
        var out = [first]
        var own: UInt32 = 0
        while own < info.vectors {
            let m = try required("own EVENT_FD \(own) of \(info.vectors) (id \(info.id)) after \(out.count) message(s)", timeout: timeout)
            out.append(m)
            if case .eventFD(let id, _)? = try? WireMessage.decodeFollowing(header: m.header, body: m.body), id == info.id { own += 1 }
        }
        return out
    }

    /// Exactly `count` messages (e.g. a newcomer's V eventfds at an existing peer).
    func take(_ count: Int, timeout: Double = 10) throws -> [Message] {
        try (0..<count).map { i in try required("message \(i + 1) of \(count)", timeout: timeout) }
    }

    /// Messages up to and including `wanted`.
    func take(until wanted: WireMessage, timeout: Double = 10) throws -> [Message] {
        var out: [Message] = []
        while true {
            let m = try required("\(wanted) after \(out.count) other message(s)", timeout: timeout)
            out.append(m)
            if (try? WireMessage.decodeFollowing(header: m.header, body: m.body)) == wanted { return out }
        }
    }

    /// Expects the next message to be `wanted` (fds counted separately).
    @discardableResult
    func expect(_ wanted: WireMessage, fds: Int? = nil, timeout: Double = 5, who: String = "client") throws -> Message {
        guard let m = try next(timeout: timeout) else {
            throw CheckFailure(expected: "\(who) to receive \(wanted)", actual: closedByServer ? "the server closed the connection" : "nothing within \(timeout) s")
        }
        let initial: Bool
        if case .initial = wanted { initial = true } else { initial = false }
        let got: WireMessage? = initial ? (try? WireMessage.decodeInitial(header: m.header, body: m.body)).map { .initial($0) }
            : try? WireMessage.decodeFollowing(header: m.header, body: m.body)
        let wantFDs = fds ?? (wanted.carriesFileDescriptor ? 1 : 0)
        try require(got == wanted && m.fds.count == wantFDs, "\(who) to receive \(wanted) with \(wantFDs) fd(s)",
                    "\(got.map { "\($0)" } ?? "undecodable \(m.typeName) len \(m.header.length)") with \(m.fds.count) fd(s)")
        return m
    }

    /// Expects the server to close the connection, allowing nothing before it.
    func expectSilentClose(timeout: Double = 5, who: String) throws {
        if let m = try next(timeout: timeout) {
            throw CheckFailure(expected: "\(who) to be closed without any message", actual: "\(m.typeName) len \(m.header.length) with \(m.fds.count) fd(s)")
        }
        try require(closedByServer, "\(who) to be closed by the server", "still open after \(timeout) s")
    }

    /// Maps the shared memory received with INIT (the first kept fd).
    func mapSharedMemory(_ fd: FileDescriptor) throws -> MemoryMapping {
        try MemoryMapping(fd: fd, size: try fd.size())
    }

    func send(_ bytes: [UInt8]) throws { try client.send(bytes) }

    /// Closes the fds kept so far; the connection stays.
    func closeKept() {
        for fd in kept { fd.closeQuietly() }
        kept.removeAll()
    }
}

/// INIT bytes with any field values.
func initBytes(type: UInt32 = 0, length: UInt32 = 40, version: UInt32 = 2, compatible: UInt32 = 2, id: UInt32 = 0, maxPeers: UInt32 = 4,
               vectors: UInt32 = 2, proto: UInt32 = 0x4001, output: UInt64 = 0x10000, extra: [UInt8] = []) -> [UInt8] {
    MessageHeader.rawMessage(type: type, length: length + UInt32(extra.count),
               body: le32(version) + le32(compatible) + le32(id) + le32(maxPeers) + le32(vectors) + le32(proto) + le64(output) + extra)
}

enum WireCheckSupport {
    static let oneMiB = 1 << 20

    /// The open descriptor count once it stopped changing (the case's embedded server and
    /// peers may still be closing descriptors of earlier statements).
    static func stableOpenCount() -> Int {
        var last = -1  // the first look only records the count
        _ = Monotonic.poll(timeout: 0.5, interval: 0.01) {
            let now = FileDescriptor.openCount()
            defer { last = now }
            return now == last
        }
        return last
    }

    /// Runs `script` on a hostile server and attaches a device to it under `profile`.
    static func attempt(profile: String, timeout: Double = 10, _ script: @escaping @Sendable (HostileServer, FileDescriptor) throws -> Void) throws -> (HostileServer, Result<AttachedDevice, any Error>) {
        let server = try HostileServer()
        server.serve(script)
        let r = Result { try AttachedDevice.attach(socketPath: server.path, options: AttachOptions(profile: profile, timeout: timeout)) }
        server.waitForScript()
        return (server, r)
    }

    /// The attach must fail with an error mentioning one of `mentioning`, and leave no fd open.
    static func expectAttachFails(_ ctx: CheckContext, what: String, profile: String? = nil, timeout: Double = 10, mentioning: [String],
                                  _ script: @escaping @Sendable (HostileServer, FileDescriptor) throws -> Void) throws {
        let before = stableOpenCount()
        let (server, r) = try attempt(profile: profile ?? ctx.profile, timeout: timeout, script)
        server.close()
        switch r {
        case .success(let d):
            let id = d.device.id
            d.close()
            throw CheckFailure(expected: "the attach to fail: \(what)", actual: "attached as peer \(id)")
        case .failure(let e):
            ctx.trace.record("check", .lifecycle, detail: "attach refused (\(what)): \(e)")
            try require(mentioning.contains { "\(e)".contains($0) }, "an error about \(what) mentioning \(mentioning.map { "\"\($0)\"" }.joined(separator: " or "))", "\(e)")
        }
        let after = FileDescriptor.openCount()
        // At most as many as before: descriptors that earlier cases were still releasing when
        // `before` was taken may be gone by now; a leak shows as more.
        try require(after <= before, "no descriptor left open after the failed attach (\(what), WIRE-CLI-19)", "\(after - before) more open (\(before) before, \(after) after)")
    }

    /// The attach must succeed; `body` examines the device, which is closed afterwards, and
    /// no descriptor may be left open.
    static func expectAttach(_ ctx: CheckContext, what: String, profile: String? = nil,
                             _ script: @escaping @Sendable (HostileServer, FileDescriptor) throws -> Void,
                             _ body: (AttachedDevice, HostileServer) throws -> Void = { _, _ in }) throws {
        let before = stableOpenCount()
        let (server, r) = try attempt(profile: profile ?? ctx.profile, script)
        defer { server.close() }
        let d: AttachedDevice
        switch r {
        case .success(let dev): d = dev
        case .failure(let e): throw CheckFailure(expected: "the attach to succeed: \(what)", actual: "\(e)")
        }
        ctx.trace.record("check", .lifecycle, detail: "attached as peer \(d.device.id) (\(what))")
        do { try body(d, server) } catch {
            d.close()
            throw error
        }
        d.close()
        server.close()
        let after = FileDescriptor.openCount()
        try require(after <= before, "no descriptor left open after detaching (\(what))", "\(after - before) more open (\(before) before, \(after) after)")
    }

    static func protocolErrors(_ d: AttachedDevice) -> [String] {
        d.linkEvents.compactMap { if case .protocolError(let m) = $0 { return m }; return nil }
    }

    /// The last step of an introduction: the device's own eventfds for every vector (WIRE-SEQ-4).
    /// A device's attach waits for them (WIRE-CLI-20), so every script that means the attach
    /// to succeed ends its opening with this.
    static func introduce(_ s: HostileServer, _ c: FileDescriptor, id: UInt32 = 0, vectors: UInt32 = 2) throws {
        for v in 0..<vectors { try s.send(c, .eventFD(id: id, vector: v), fd: try s.eventFD().fd) }
    }

    /// A standard opening: INIT (id, 4 peers, 2 vectors, 64K output, 1 MiB) and the own eventfds.
    static func standardInit(_ s: HostileServer, _ c: FileDescriptor, id: UInt32 = 0) throws -> [EventFD] {
        let shm = try s.sharedMemory(size: oneMiB)
        try s.send(c, initBytes(id: id), fds: [shm])
        var own: [EventFD] = []
        for v: UInt32 in 0..<2 {
            let e = try s.eventFD()
            try s.send(c, .eventFD(id: id, vector: v), fd: e.fd)
            own.append(e)
        }
        return own
    }

    /// A platform-attached peer (MSI-X ready) around an attached device.
    static func drivenPeer(_ d: AttachedDevice, _ ctx: CheckContext, name: String = "D") throws -> HarnessPeer {
        let p = try HarnessPeer(name: name, link: d, trace: ctx.trace)
        try p.prepare(.ready)
        return p
    }

    static func vectorLimit(_ profile: String) -> UInt32 { profile == "jailhouse" ? 16 : 1024 }
}

extension BuiltinChecks {
    /// Built-in conformance checks for the wire requirements that scripts cannot express.
    /// Their leak checks count this process's descriptors (``WireCheckSupport/stableOpenCount()``).
    static let wireChecks: [BuiltinCheck] = (wireMessageChecks + wireClientChecks + introductionChecks + peerChecks).map { c in
        var c = c
        c.countsProcessDescriptors = true
        return c
    }

    // MARK: - What the server puts on the wire

    static let wireMessageChecks: [BuiltinCheck] = [
        BuiltinCheck(name: "wire-init-layout", summary: "INIT bytes: LE header type 0 len 40, version/compatible 2, fields, one shm fd of the configured size, sent with the message") { ctx in
            let sock = try UnixSocket.connect(path: ctx.socketPath)
            defer { sock.closeQuietly() }
            let status = try FileSystem.status(ofPath: ctx.socketPath)
            try require(status?.isSocket == true, "the server's path to be a UNIX socket (WIRE-GEN-1)", "\(String(describing: status))")
            var type: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            _ = getsockopt(sock.rawValue, SOL_SOCKET, SO_TYPE, &type, &len)
            try require(type == Int32(SOCK_STREAM.rawValue), "a stream socket (WIRE-GEN-1)", "socket type \(type)")
            let c = try FDWireClient(path: ctx.socketPath)
            defer { c.close() }
            guard let m = try c.next() else { throw CheckFailure(expected: "INIT", actual: "nothing") }
            let raw = m.rawBytes
            ctx.trace.record("check", .wire, detail: "INIT bytes \(hex(raw)) with \(m.fds.count) fd(s)")
            let cfg = ctx.server
            try require(raw.count == 40, "40 bytes of INIT", "\(raw.count)")
            let id = raw.littleEndianUInt32(at: 16)  // other clients of the case may hold lower IDs
            try require(UInt64(id) < cfg.maxPeers, "an ID below max peers", "\(id)")
            let expected = le32(0) + le32(40) + le32(2) + le32(2) + le32(id) + le32(UInt32(cfg.maxPeers)) + le32(UInt32(cfg.vectors))
                + le32(cfg.advertisedProtocol(forPeer: id)) + le64(cfg.outputSectionSize)
            try require(raw == expected, "INIT bytes \(hex(expected)) (little-endian, WIRE-INIT-1, WIRE-INIT-2)", hex(raw))
            try require(m.fds.count == 1, "exactly one fd with INIT", "\(m.fds.count)")
            try require(m.fdsWithFirstByte, "the fd to arrive with the INIT bytes (WIRE-GEN-3)", "it came with a later part")
            let size = try m.fds[0].size()
            try require(UInt64(size) == cfg.size, "the shm fd's size to be the configured \(cfg.size) (WIRE-INIT-1, SRV-SHM-1)", "\(size)")
            let target = descriptorTarget(m.fds[0])
            try require(!target.contains("eventfd"), "the INIT fd to be the shared memory", target)
        },
        BuiltinCheck(name: "wire-message-layout", summary: "EVENT_FD len 16 with one eventfd, PEER_GONE len 12 without fd, each fd with its own message") { ctx in
            let x = try FDWireClient(path: ctx.socketPath)
            defer { x.close() }
            let y = try FDWireClient(path: ctx.socketPath)
            defer { y.close() }
            let V = Int(ctx.server.vectors)
            var sawEvent = false, sawGone = false
            func examine(_ who: String, _ m: FDWireClient.Message) throws {
                ctx.trace.record(who, .wire, detail: "\(m.typeName) \(hex(m.rawBytes)) fds \(m.fds.count)")
                try require(m.header.length == UInt32(m.rawBytes.count), "len to count the whole message with its header (WIRE-GEN-2)", "len \(m.header.length), \(m.rawBytes.count) bytes")
                switch m.header.type {
                case 0: break
                case 1:
                    sawEvent = true
                    try require(m.header.length == 16, "EVENT_FD len 16 (WIRE-EVT-1)", "\(m.header.length)")
                    try require(m.fds.count == 1, "EVENT_FD with exactly one fd (WIRE-EVT-1, WIRE-GEN-3)", "\(m.fds.count)")
                    try require(m.fdsWithFirstByte, "the eventfd to come with its own message's bytes (WIRE-GEN-3)", "it came with a later read")
                    let t = descriptorTarget(m.fds[0])
                    try require(t.contains("eventfd"), "an eventfd with EVENT_FD", t)
                case 2:
                    sawGone = true
                    try require(m.header.length == 12, "PEER_GONE len 12 (WIRE-GONE-1)", "\(m.header.length)")
                    try require(m.fds.isEmpty, "PEER_GONE without fd (WIRE-GONE-1)", "\(m.fds.count) fd(s)")
                default:
                    throw CheckFailure(expected: "message types 0, 1, 2 only", actual: "type \(m.header.type)")
                }
            }
            var yid: UInt32 = 0
            for (name, c) in [("X", x), ("Y", y)] {
                // X also gets Y's eventfds after its own introduction.
                let ms = try c.takeIntroduction() + (name == "X" ? c.take(Int(V)) : [])
                try require(ms.count >= 1 + V, "\(name) to receive INIT and eventfds", "\(ms.count) messages")
                if name == "Y" { yid = ms[0].body.littleEndianUInt32(at: 8) }
                for m in ms { try examine(name, m) }
            }
            y.close()
            guard let gone = try x.next() else { throw CheckFailure(expected: "PEER_GONE at X after Y left", actual: "nothing") }
            try examine("X", gone)
            try require(gone.body.littleEndianUInt32(at: 0) == yid, "PEER_GONE for Y's id \(yid)", "id \(gone.body.littleEndianUInt32(at: 0))")
            try require(sawEvent && sawGone, "EVENT_FD and PEER_GONE messages to examine", "event \(sawEvent), gone \(sawGone)")
        },
        BuiltinCheck(name: "wire-eventfd-signals", summary: "adding to a received EVENT_FD eventfd interrupts that peer's vector") { ctx in
            let harness = try Harness(server: .external(socketPath: ctx.socketPath))
            defer { harness.close() }
            let x = try FDWireClient(path: ctx.socketPath)
            defer { x.close() }
            _ = try x.takeIntroduction()
            let a = try harness.join(name: "A", options: AttachOptions(profile: ctx.profile), setup: .ready)
            var fds: [UInt32: EventFD] = [:]
            for m in try x.take(Int(ctx.server.vectors)) {
                if case .eventFD(let id, let v) = try WireMessage.decodeFollowing(header: m.header, body: m.body), id == a.id, let fd = m.fds.first {
                    fds[v] = EventFD(fd: fd)
                }
            }
            try require(fds.count == Int(ctx.server.vectors), "X to receive A's \(ctx.server.vectors) eventfds", "\(fds.keys.sorted())")
            for v in (0..<UInt32(ctx.server.vectors)).reversed() {
                let cursor = a.interruptCount
                try fds[v]!.signal()
                guard a.waitForInterrupt(vector: Int(v), after: cursor, timeout: 2) != nil else {
                    throw CheckFailure(expected: "A to be interrupted on vector \(v) after X added 1 to EVENT_FD(\(a.id), \(v))'s eventfd", actual: "no interrupt")
                }
            }
        },
        BuiltinCheck(name: "wire-device-silent", summary: "a device never writes to the server socket, whatever it is made to do") { ctx in
            try WireCheckSupport.expectAttach(ctx, what: "silent device", { s, c in
                _ = try WireCheckSupport.standardInit(s, c)
                for v: UInt32 in 0..<2 { try s.send(c, .eventFD(id: 1, vector: v), fd: try s.eventFD().fd) }
            }) { d, s in
                let p = try WireCheckSupport.drivenPeer(d, ctx)
                try require(d.waitForPeers(timeout: 5) { $0 == [0, 1] }, "peers 0 and 1 active", "\(d.activePeers)")
                p.barWrite(0, offset: p.device.registerOffsets.state, size: 4, value: 5)  // state
                p.barWrite(0, offset: p.device.registerOffsets.doorbell, size: 4, value: 1 << 16 | 1)  // ring peer 1
                p.barWrite(0, offset: p.device.registerOffsets.doorbell, size: 4, value: 0)  // ring self
                p.barWrite(0, offset: p.device.registerOffsets.doorbell, size: 4, value: 3 << 16)  // ring an inactive peer
                p.device.reset()
                guard let conn = s.connection else { throw CheckFailure(expected: "the connection", actual: "none") }
                try s.send(conn, .peerGone(id: 1))
                try s.send(conn, MessageHeader.rawMessage(type: 9, length: 12, body: le32(0)))  // an error the device records
                try require(d.settle(), "the device to handle both messages", "it did not")
                var byte: UInt8 = 0
                let n = recv(conn.rawValue, &byte, 1, Int32(MSG_DONTWAIT | MSG_PEEK))
                let err = errno
                try require(n < 0 && (err == EAGAIN || err == EWOULDBLOCK), "nothing readable from the device (WIRE-GEN-4)",
                            n == 0 ? "the device closed the socket" : n > 0 ? "the device wrote data" : "recv error \(err)")
            }
        },
    ]

    // MARK: - Device-side validation of what a server sends (WIRE-CLI-*)

    static let wireClientChecks: [BuiltinCheck] = [
        BuiltinCheck(name: "wire-cli-1", summary: "the first message must be INIT of len >= 40") { ctx in
            try WireCheckSupport.expectAttachFails(ctx, what: "EVENT_FD first", mentioning: ["INIT", "type"]) { s, c in
                try s.send(c, initBytes(type: 1), fds: [try s.sharedMemory(size: WireCheckSupport.oneMiB)])
            }
            try WireCheckSupport.expectAttachFails(ctx, what: "PEER_GONE first", mentioning: ["INIT", "type"]) { s, c in
                try s.send(c, WireMessage.peerGone(id: 1).encode())
            }
            try WireCheckSupport.expectAttachFails(ctx, what: "INIT with len 32", mentioning: ["40", "short", "len"]) { s, c in
                try s.send(c, MessageHeader.rawMessage(type: 0, length: 32, body: Array(repeating: 0, count: 24)), fds: [try s.sharedMemory(size: WireCheckSupport.oneMiB)])
            }
            try WireCheckSupport.expectAttach(ctx, what: "INIT with len 40") { s, c in
                _ = try WireCheckSupport.standardInit(s, c)
            }
        },
        BuiltinCheck(name: "wire-cli-2", summary: "bytes beyond a message's fixed size are skipped") { ctx in
            try WireCheckSupport.expectAttach(ctx, what: "padded messages", { s, c in
                try s.send(c, initBytes(id: 0, extra: [0xAA, 0xBB, 0xCC, 0xDD, 1, 2, 3, 4]), fds: [try s.sharedMemory(size: WireCheckSupport.oneMiB)])
                try s.send(c, MessageHeader.rawMessage(type: 1, length: 24, body: le32(1) + le32(0) + [9, 9, 9, 9, 9, 9, 9, 9]), fds: [try s.eventFD().fd])
                try s.send(c, MessageHeader.rawMessage(type: 1, length: 20, body: le32(2) + le32(0) + [7, 7, 7, 7]), fds: [try s.eventFD().fd])
                try s.send(c, MessageHeader.rawMessage(type: 2, length: 16, body: le32(2) + [5, 5, 5, 5]))
                try s.send(c, .eventFD(id: 3, vector: 0), fd: try s.eventFD().fd)
                try WireCheckSupport.introduce(s, c, id: 0)
            }) { d, _ in
                try require(d.waitForPeers(timeout: 5) { $0 == [0, 1, 3] }, "peers 1 and 3 active, 2 gone: every padded message parsed in step (WIRE-CLI-2)", "\(d.activePeers), events \(d.linkEvents)")
                try require(WireCheckSupport.protocolErrors(d).isEmpty, "no protocol errors for padded messages", "\(WireCheckSupport.protocolErrors(d))")
                try require(d.device.layout.geometry.rwSectionSize == UInt64(WireCheckSupport.oneMiB) - 0x1000 - 4 * 0x10000, "the padded INIT's fields used", "RW \(d.device.layout.geometry.rwSectionSize)")
            }
        },
        BuiltinCheck(name: "wire-cli-3", summary: "compatible_version must be 2; version is not checked") { ctx in
            for compat: UInt32 in [1, 3] {
                try WireCheckSupport.expectAttachFails(ctx, what: "compatible_version \(compat)", mentioning: ["compatible"]) { s, c in
                    try s.send(c, initBytes(compatible: compat), fds: [try s.sharedMemory(size: WireCheckSupport.oneMiB)])
                }
            }
            for version: UInt32 in [1, 3, 0xFFFF_FFFF] {
                try WireCheckSupport.expectAttach(ctx, what: "version \(version) with compatible_version 2") { s, c in
                    try s.send(c, initBytes(version: version), fds: [try s.sharedMemory(size: WireCheckSupport.oneMiB)])
                    try WireCheckSupport.introduce(s, c)
                }
            }
        },
        BuiltinCheck(name: "wire-cli-4", summary: "the INIT id must be <= 65535 and < max_peers") { ctx in
            try WireCheckSupport.expectAttachFails(ctx, what: "id 4 with max_peers 4", mentioning: ["id", "ID", "4"]) { s, c in
                try s.send(c, initBytes(id: 4, maxPeers: 4), fds: [try s.sharedMemory(size: WireCheckSupport.oneMiB)])
            }
            try WireCheckSupport.expectAttachFails(ctx, what: "id 65536 with max_peers 65536", mentioning: ["id", "ID", "65535", "65536"]) { s, c in
                try s.send(c, initBytes(id: 65536, maxPeers: 65536, output: 0), fds: [try s.sharedMemory(size: WireCheckSupport.oneMiB)])
            }
            try WireCheckSupport.expectAttach(ctx, what: "id 3 with max_peers 4") { s, c in
                try s.send(c, initBytes(id: 3, maxPeers: 4), fds: [try s.sharedMemory(size: WireCheckSupport.oneMiB)])
                try WireCheckSupport.introduce(s, c, id: 3)
            } _: { d, _ in try require(d.device.id == 3, "ID 3", "\(d.device.id)") }
            try WireCheckSupport.expectAttach(ctx, what: "id 65535 with max_peers 65536") { s, c in
                try s.send(c, initBytes(id: 65535, maxPeers: 65536, output: 0), fds: [try s.sharedMemory(size: WireCheckSupport.oneMiB)])
                try WireCheckSupport.introduce(s, c, id: 65535)
            } _: { d, _ in try require(d.readIDRegister() == 65535, "the ID register 65535", "\(d.readIDRegister())") }
        },
        BuiltinCheck(name: "wire-cli-5", summary: "max_peers must be in 2..65536") { ctx in
            for n: UInt32 in [0, 1, 65537] {
                try WireCheckSupport.expectAttachFails(ctx, what: "max_peers \(n)", mentioning: ["max", "peers", "Peers"]) { s, c in
                    try s.send(c, initBytes(id: 0, maxPeers: n, output: 0), fds: [try s.sharedMemory(size: WireCheckSupport.oneMiB)])
                }
            }
            for n: UInt32 in [2, 65536] {
                try WireCheckSupport.expectAttach(ctx, what: "max_peers \(n)") { s, c in
                    try s.send(c, initBytes(id: 1, maxPeers: n, output: 0), fds: [try s.sharedMemory(size: WireCheckSupport.oneMiB)])
                    try WireCheckSupport.introduce(s, c, id: 1)
                } _: { d, _ in
                    let maxPeers = d.device.readRegister(d.device.registerOffsets.maxPeers)
                    try require(maxPeers == n, "Maximum Peers \(n)", "\(maxPeers)")
                }
            }
        },
        BuiltinCheck(name: "wire-cli-6", summary: "vectors must be in 1..1024 and within the profile's limit") { ctx in
            let limit = WireCheckSupport.vectorLimit(ctx.profile)
            for v: UInt32 in Array(Set([0, 1025, limit + 1])).sorted() {
                try WireCheckSupport.expectAttachFails(ctx, what: "\(v) vectors under \(ctx.profile)", mentioning: ["vector"]) { s, c in
                    try s.send(c, initBytes(vectors: v), fds: [try s.sharedMemory(size: WireCheckSupport.oneMiB)])
                }
            }
            for v: UInt32 in [1, limit] {
                try WireCheckSupport.expectAttach(ctx, what: "\(v) vectors under \(ctx.profile)") { s, c in
                    try s.send(c, initBytes(vectors: v), fds: [try s.sharedMemory(size: WireCheckSupport.oneMiB)])
                    try WireCheckSupport.introduce(s, c, vectors: v)
                } _: { d, _ in try require(d.device.configuration.vectors == Int(v), "\(v) vectors", "\(d.device.configuration.vectors)") }
            }
        },
        BuiltinCheck(name: "wire-cli-7", summary: "INIT must carry an fd; the size is the fd's fstat size") { ctx in
            try WireCheckSupport.expectAttachFails(ctx, what: "INIT without fd", mentioning: ["WIRE-CLI-7", "descriptor", "fd"]) { s, c in
                try s.send(c, initBytes())
            }
            let size = 0xC3000  // not a power of two
            try WireCheckSupport.expectAttach(ctx, what: "INIT with a 0xC3000-byte memfd") { s, c in
                try s.send(c, initBytes(maxPeers: 4, output: 0x10000), fds: [try s.sharedMemory(size: size)])
                try WireCheckSupport.introduce(s, c)
            } _: { d, _ in
                let g = d.device.layout.geometry
                try require(g.totalSize == UInt64(size), "a \(size)-byte layout from fstat", "\(g.totalSize)")
            }
        },
        BuiltinCheck(name: "wire-cli-8", summary: "the shared memory must hold ST + max_peers x OUT") { ctx in
            try WireCheckSupport.expectAttachFails(ctx, what: "1 page short of ST + 4 x 64K", mentioning: ["small", "size"]) { s, c in
                try s.send(c, initBytes(maxPeers: 4, output: 0x10000), fds: [try s.sharedMemory(size: 0x1000 + 4 * 0x10000 - 0x1000)])
            }
            try WireCheckSupport.expectAttachFails(ctx, what: "2000 peers need an 8K state table", mentioning: ["small", "size"]) { s, c in
                try s.send(c, initBytes(maxPeers: 2000, output: 0), fds: [try s.sharedMemory(size: 0x1000)])
            }
            try WireCheckSupport.expectAttach(ctx, what: "exactly ST + 4 x 64K") { s, c in
                try s.send(c, initBytes(maxPeers: 4, output: 0x10000), fds: [try s.sharedMemory(size: 0x1000 + 4 * 0x10000)])
                try WireCheckSupport.introduce(s, c)
            } _: { d, _ in try require(d.device.layout.geometry.rwSectionSize == 0, "RW 0", "\(d.device.layout.geometry.rwSectionSize)") }
        },
        BuiltinCheck(name: "wire-cli-9", summary: "RW = size - ST - max_peers x OUT") { ctx in
            for (n, out, size, st) in [(UInt32(4), UInt64(0x10000), 0x100000, UInt64(0x1000)), (2, 0, 0x5000, 0x1000), (2000, 0x1000, 0x800000, 0x2000), (1024, 0, 0x3000, 0x1000)] {
                try WireCheckSupport.expectAttach(ctx, what: "N \(n), OUT \(out), size \(size)") { s, c in
                    try s.send(c, initBytes(maxPeers: n, output: out), fds: [try s.sharedMemory(size: size)])
                    try WireCheckSupport.introduce(s, c)
                } _: { d, _ in
                    let g = d.device.layout.geometry
                    let rw = UInt64(size) - st - UInt64(n) * out
                    try require(g.rwSectionSize == rw && g.stateTableSize == st, "ST \(st), RW \(rw)", "ST \(g.stateTableSize), RW \(g.rwSectionSize)")
                }
            }
        },
        BuiltinCheck(name: "wire-cli-10", summary: "INIT parameters must pass DEV-CFG-1..6, page multiples included, in every profile") { ctx in
            try WireCheckSupport.expectAttachFails(ctx, what: "protocol 0x10000", mentioning: ["protocol", "DEV-CFG-6"]) { s, c in
                try s.send(c, initBytes(proto: 0x10000), fds: [try s.sharedMemory(size: WireCheckSupport.oneMiB)])
            }
            // The RFC device would accept these; ours refuses them in every profile because the
            // sections' access rights are page-granular (SHM-LAYOUT-5; spec §14).
            let cases: [(String, UInt64, Int)] = [("OUT 0x800", 0x800, WireCheckSupport.oneMiB), ("RW not a page multiple (size 1M + 0x800)", 0x10000, WireCheckSupport.oneMiB + 0x800)]
            for (what, out, size) in cases {
                try WireCheckSupport.expectAttachFails(ctx, what: what + " under \(ctx.profile)", mentioning: ["page", "multiple"]) { s, c in
                    try s.send(c, initBytes(output: out), fds: [try s.sharedMemory(size: size)])
                }
            }
        },
        BuiltinCheck(name: "wire-cli-11", summary: "EVENT_FD needs an fd, id < max_peers, vector = count held, vector < V") { ctx in
            try WireCheckSupport.expectAttach(ctx, what: "bad EVENT_FDs", { s, c in
                _ = try WireCheckSupport.standardInit(s, c)
                let e = try s.eventFD()
                try s.send(c, .eventFD(id: 1, vector: 1), fd: e.fd)  // vector 1 before 0
                try s.send(c, .eventFD(id: 1, vector: 0))  // no fd
                try s.send(c, .eventFD(id: 1, vector: 0), fd: e.fd)  // fine
                try s.send(c, .eventFD(id: 1, vector: 0), fd: e.fd)  // vector 0 again
                try s.send(c, .eventFD(id: 1, vector: 1), fd: e.fd)  // fine
                try s.send(c, .eventFD(id: 1, vector: 2), fd: e.fd)  // V = 2
                try s.send(c, .eventFD(id: 4, vector: 0), fd: e.fd)  // id = max_peers
                try s.send(c, .eventFD(id: 2, vector: 0), fd: e.fd)  // fine
            }) { d, _ in
                try require(Monotonic.poll(timeout: 5) { WireCheckSupport.protocolErrors(d).count >= 5 && d.isActive(2) }, "5 EVENT_FD errors recorded and the good ones used",
                            "\(d.linkEvents)")
                let errors = WireCheckSupport.protocolErrors(d)
                try require(errors.count == 5, "exactly 5 errors", "\(errors)")
                try require(d.activePeers == [0, 1, 2], "peers 0, 1, 2 active", "\(d.activePeers)")
                try require(d.ring(from: 0, target: 1, vector: 1) == .delivered, "peer 1 vector 1 held", "not")
            }
        },
        BuiltinCheck(name: "wire-cli-12", summary: "an increment on an own eventfd is an event on that vector") { ctx in
            try WireCheckSupport.expectAttach(ctx, what: "own eventfds", { s, c in
                _ = try WireCheckSupport.standardInit(s, c)
            }) { d, s in
                let p = try WireCheckSupport.drivenPeer(d, ctx)
                try require(d.waitForPeers(timeout: 5) { $0 == [0] }, "own eventfds held", "\(d.activePeers)")
                // The server's copies: kept[1], kept[2] are own vectors 0 and 1 (kept[0] is the shm).
                for v in [1, 0] {
                    let cursor = p.interruptCount
                    try EventFD(fd: s.kept[1 + v]).signal()
                    try require(p.waitForInterrupt(vector: v, after: cursor, timeout: 2) != nil, "an interrupt on vector \(v) after its own eventfd was signalled", "none")
                }
            }
        },
        BuiltinCheck(name: "wire-cli-13", summary: "another peer's eventfds are what doorbells and state changes signal; one eventfd makes it active") { ctx in
            try WireCheckSupport.expectAttach(ctx, what: "peer eventfds", { s, c in
                _ = try WireCheckSupport.standardInit(s, c)
                try s.send(c, .eventFD(id: 1, vector: 0), fd: try s.eventFD().fd)  // kept[3]
            }) { d, s in
                let p = try WireCheckSupport.drivenPeer(d, ctx)
                try require(d.waitForPeers(timeout: 5) { $0 == [0, 1] }, "peer 1 active with only its vector-0 eventfd", "\(d.activePeers)")
                let p1v0 = EventFD(fd: s.kept[3])
                p.barWrite(0, offset: p.device.registerOffsets.doorbell, size: 4, value: 1 << 16 | 0)
                try require(try p1v0.consume() == 1, "the doorbell to peer 1 vector 0 to add 1 to that eventfd", "not signalled")
                p.barWrite(0, offset: p.device.registerOffsets.doorbell, size: 4, value: 1 << 16 | 1)
                try require(try p1v0.consume() == nil, "a doorbell for a vector not held to signal nothing", "vector 0's eventfd signalled")
                guard let conn = s.connection else { throw CheckFailure(expected: "connection", actual: "none") }
                let p1v1 = try s.eventFD()  // kept[4]
                try s.send(conn, .eventFD(id: 1, vector: 1), fd: p1v1.fd)
                try require(Monotonic.poll(timeout: 5) { d.linkEvents.contains(.eventFD(peer: 1, vector: 1)) }, "peer 1 vector 1 received", "\(d.linkEvents)")
                p.barWrite(0, offset: p.device.registerOffsets.doorbell, size: 4, value: 1 << 16 | 1)
                try require(try p1v1.consume() == 1, "the doorbell to peer 1 vector 1 to signal its eventfd", "not signalled")
                p.barWrite(0, offset: p.device.registerOffsets.state, size: 4, value: 0x42)
                try require(try p1v0.consume() == 1, "a state change to signal peer 1's vector-0 eventfd", "not signalled")
                try require(try p1v1.consume() == nil, "a state change to leave vector 1 alone", "signalled")
                try require(!d.isActive(2), "peer 2 (no eventfd) inactive", "active")
            }
        },
        BuiltinCheck(name: "wire-cli-14", summary: "PEER_GONE for the own ID or an ID without eventfds is an error") { ctx in
            try WireCheckSupport.expectAttach(ctx, what: "bad PEER_GONEs", { s, c in
                _ = try WireCheckSupport.standardInit(s, c, id: 2)
                try s.send(c, .eventFD(id: 1, vector: 0), fd: try s.eventFD().fd)
                try s.send(c, .peerGone(id: 2))  // own
                try s.send(c, .peerGone(id: 3))  // never announced
                try s.send(c, .peerGone(id: 1))  // fine
                try s.send(c, .peerGone(id: 1))  // again: no eventfd held any more
            }) { d, _ in
                try require(Monotonic.poll(timeout: 5) { WireCheckSupport.protocolErrors(d).count >= 3 }, "3 PEER_GONE errors", "\(d.linkEvents)")
                let errors = WireCheckSupport.protocolErrors(d)
                try require(errors.count == 3 && d.linkEvents.filter({ $0 == .peerLeft(1) }).count == 1, "3 errors and one departure of peer 1", "\(d.linkEvents)")
                try require(d.isLinkUp && d.activePeers == [2], "the link up with only the own ID active", "link up \(d.isLinkUp), peers \(d.activePeers)")
            }
        },
        BuiltinCheck(name: "wire-cli-15", summary: "a len below the type's fixed size is an error") { ctx in
            try WireCheckSupport.expectAttach(ctx, what: "short messages", { s, c in
                _ = try WireCheckSupport.standardInit(s, c)
                try s.send(c, .eventFD(id: 1, vector: 0), fd: try s.eventFD().fd)
                try s.send(c, MessageHeader.rawMessage(type: 1, length: 12, body: le32(1)), fds: [try s.eventFD().fd])  // EVENT_FD needs 16
                try s.send(c, MessageHeader.rawMessage(type: 2, length: 8, body: []))  // PEER_GONE needs 12
                try s.send(c, .eventFD(id: 1, vector: 1), fd: try s.eventFD().fd)  // still in step
            }) { d, _ in
                try require(Monotonic.poll(timeout: 5) { d.linkEvents.contains(.eventFD(peer: 1, vector: 1)) }, "the message after the short ones parsed", "\(d.linkEvents)")
                try require(WireCheckSupport.protocolErrors(d).count == 2, "2 errors", "\(WireCheckSupport.protocolErrors(d))")
                try require(d.isActive(1) && d.isLinkUp, "peer 1 still active, link up", "\(d.activePeers), up \(d.isLinkUp)")
            }
        },
        BuiltinCheck(name: "wire-cli-16", summary: "unknown type or a second INIT: error, skipped by len; len < 8 takes the link down") { ctx in
            try WireCheckSupport.expectAttach(ctx, what: "unknown type and second INIT", { s, c in
                _ = try WireCheckSupport.standardInit(s, c)
                try s.send(c, MessageHeader.rawMessage(type: 7, length: 20, body: le32(1) + le32(0) + le32(0)))  // looks like an EVENT_FD body
                try s.send(c, initBytes(id: 1), fds: [try s.sharedMemory(size: WireCheckSupport.oneMiB)])
                try s.send(c, .eventFD(id: 1, vector: 0), fd: try s.eventFD().fd)
            }) { d, _ in
                try require(Monotonic.poll(timeout: 5) { d.isActive(1) }, "the EVENT_FD after the skipped messages parsed", "\(d.linkEvents)")
                let errors = WireCheckSupport.protocolErrors(d)
                try require(errors.count == 2, "2 errors", "\(errors)")
                try require(d.device.id == 0 && d.isLinkUp, "the second INIT ignored, link up", "id \(d.device.id), up \(d.isLinkUp)")
            }
            try WireCheckSupport.expectAttach(ctx, what: "len 4", { s, c in
                _ = try WireCheckSupport.standardInit(s, c)
                try s.send(c, MessageHeader.rawMessage(type: 1, length: 4, body: []))
            }) { d, _ in
                try require(Monotonic.poll(timeout: 5) { !d.isLinkUp }, "the link down after a len below 8 (DEV-PEER-4)", "link up, events \(d.linkEvents)")
                try require(d.readIDRegister() == 0, "registers still served", "\(d.readIDRegister())")
            }
        },
        BuiltinCheck(name: "wire-cli-17", summary: "after INIT an erroneous message is discarded, recorded, its fd closed; the link stays up") { ctx in
            try WireCheckSupport.expectAttach(ctx, what: "erroneous messages with fds", { s, c in
                _ = try WireCheckSupport.standardInit(s, c)
            }) { d, s in
                try require(d.waitForPeers(timeout: 5) { $0 == [0] }, "own eventfds", "\(d.activePeers)")
                let e = try s.eventFD()
                let before = FileDescriptor.openCount()
                guard let c = s.connection else { throw CheckFailure(expected: "connection", actual: "none") }
                try s.send(c, .eventFD(id: 0, vector: 0), fd: e.fd)  // own vector 0 again
                try s.send(c, .eventFD(id: 5, vector: 0), fd: e.fd)  // id too large
                try s.send(c, MessageHeader.rawMessage(type: 1, length: 12, body: le32(1)), fds: [e.fd])  // short
                try s.send(c, MessageHeader.rawMessage(type: 8, length: 8, body: []), fds: [e.fd])  // unknown type
                try s.send(c, initBytes(), fds: [e.fd])  // second INIT
                try s.send(c, .eventFD(id: 1, vector: 0), fd: e.fd)  // good
                try require(Monotonic.poll(timeout: 5) { d.isActive(1) }, "the good message after the errors used", "\(d.linkEvents)")
                try require(WireCheckSupport.protocolErrors(d).count == 5, "5 errors recorded", "\(WireCheckSupport.protocolErrors(d))")
                let after = FileDescriptor.openCount()
                try require(after == before + 1, "only the good EVENT_FD's fd kept (the 5 others closed)", "\(after - before) more fds open")
                try require(d.isLinkUp, "link up", "down")
            }
        },
        BuiltinCheck(name: "wire-cli-18", summary: "an fd on a message type without one is closed; the message is still processed") { ctx in
            try WireCheckSupport.expectAttach(ctx, what: "PEER_GONE with an fd", { s, c in
                _ = try WireCheckSupport.standardInit(s, c)
                try s.send(c, .eventFD(id: 1, vector: 0), fd: try s.eventFD().fd)
            }) { d, s in
                try require(d.waitForPeers(timeout: 5) { $0 == [0, 1] }, "peer 1 active", "\(d.activePeers)")
                let stray = try s.eventFD()
                let before = FileDescriptor.openCount()
                guard let c = s.connection else { throw CheckFailure(expected: "connection", actual: "none") }
                try s.send(c, WireMessage.peerGone(id: 1).encode(), fds: [stray.fd])
                try require(Monotonic.poll(timeout: 5) { d.linkEvents.contains(.peerLeft(1)) }, "PEER_GONE(1) processed despite the stray fd", "\(d.linkEvents)")
                let after = FileDescriptor.openCount()
                try require(after == before - 1, "the stray fd closed and peer 1's eventfd closed", "\(after - before) fds difference")
            }
        },
        BuiltinCheck(name: "wire-cli-19", summary: "a failed attach closes every fd received and builds no device") { ctx in
            try WireCheckSupport.expectAttachFails(ctx, what: "bad INIT with two fds", mentioning: ["compatible"]) { s, c in
                try s.send(c, initBytes(compatible: 9), fds: [try s.sharedMemory(size: WireCheckSupport.oneMiB), try s.eventFD().fd])
            }
            try WireCheckSupport.expectAttachFails(ctx, what: "INIT with an fd, then too small", mentioning: ["small"]) { s, c in
                try s.send(c, initBytes(maxPeers: 4, output: 0x40000), fds: [try s.sharedMemory(size: WireCheckSupport.oneMiB)])
            }
            try WireCheckSupport.expectAttachFails(ctx, what: "device construction refused (2000 vectors)", mentioning: ["vector"]) { s, c in
                try s.send(c, initBytes(vectors: 2000), fds: [try s.sharedMemory(size: WireCheckSupport.oneMiB)])
            }
            try WireCheckSupport.expectAttachFails(ctx, what: "server hangs up during INIT", mentioning: ["closed", "INIT", "short"]) { s, c in
                try s.send(c, Array(initBytes().prefix(20)), fds: [try s.sharedMemory(size: WireCheckSupport.oneMiB)])
                s.hangUp()
            }
        },
    ]
}

extension BuiltinChecks {
    // MARK: - The introduction, and peers' eventfds that must not hurt the device

    static let introductionChecks: [BuiltinCheck] = [
        BuiltinCheck(name: "wire-cli-20", summary: "attach returns only after the server's introduction: every earlier peer known, own eventfds in place") { ctx in
            // A server that takes its time between the other peers' eventfds and the device's
            // own: an attach that returned at INIT would see no peers and lose what it sends.
            try WireCheckSupport.expectAttach(ctx, what: "a slow introduction", { s, c in
                try s.send(c, initBytes(id: 2), fds: [try s.sharedMemory(size: WireCheckSupport.oneMiB)])
                for peer: UInt32 in [0, 1] {
                    for v: UInt32 in 0..<2 { try s.send(c, .eventFD(id: peer, vector: v), fd: try s.eventFD().fd) }
                }
                Monotonic.sleep(seconds: 0.3)  // the stimulus: a slow server, not synchronisation
                try WireCheckSupport.introduce(s, c, id: 2)
            }) { d, s in
                // No waiting here: attach itself must have waited.
                try require(d.introducedPeers == [0, 1, 2], "peers 0, 1 and the device itself fully introduced when attach returns (WIRE-CLI-20)", "\(d.introducedPeers)")
                let p = try WireCheckSupport.drivenPeer(d, ctx)
                // kept: [0] shm, [1...4] peers 0 and 1 (2 vectors each), [5, 6] own.
                p.barWrite(0, offset: p.device.registerOffsets.doorbell, size: 4, value: 1 << 16 | 1)
                try require(try EventFD(fd: s.kept[4]).consume() == 1, "a doorbell rung right after attach to reach peer 1 vector 1", "not signalled")
                p.barWrite(0, offset: p.device.registerOffsets.state, size: 4, value: 7)
                try require(try EventFD(fd: s.kept[1]).consume() == 1 && EventFD(fd: s.kept[3]).consume() == 1,
                            "a state change right after attach to reach peers 0 and 1 on vector 0", "not signalled")
            }
            try WireCheckSupport.expectAttachFails(ctx, what: "own eventfds never sent", timeout: 0.5, mentioning: ["introduction", "own eventfds: 1 of 2"]) { s, c in
                try s.send(c, initBytes(), fds: [try s.sharedMemory(size: WireCheckSupport.oneMiB)])
                try s.send(c, .eventFD(id: 1, vector: 0), fd: try s.eventFD().fd)
                try s.send(c, .eventFD(id: 0, vector: 0), fd: try s.eventFD().fd)
            }
            try WireCheckSupport.expectAttachFails(ctx, what: "hang-up during the introduction", mentioning: ["closed", "introduction"]) { s, c in
                try s.send(c, initBytes(), fds: [try s.sharedMemory(size: WireCheckSupport.oneMiB)])
                try s.send(c, .eventFD(id: 1, vector: 0), fd: try s.eventFD().fd)
                s.hangUp()
            }
        },
        BuiltinCheck(name: "wire-cli-21", summary: "a peer's eventfd that is full or blocking never blocks the device: the doorbell is dropped and reported") { ctx in
            try WireCheckSupport.expectAttach(ctx, what: "a peer whose eventfd is full and blocking", { s, c in
                _ = try WireCheckSupport.standardInit(s, c)
                // A hostile peer clears O_NONBLOCK (shared by every holder) and fills its counter.
                let full = try EventFD.create(nonBlocking: false)
                s.kept.append(full.fd)
                try full.signal(0xFFFF_FFFF_FFFF_FFFE)
                try s.send(c, .eventFD(id: 1, vector: 0), fd: full.fd)
                try s.send(c, .eventFD(id: 1, vector: 1), fd: try s.eventFD().fd)
            }) { d, _ in
                try require(d.waitForIntroductions(timeout: 5) { $0 == [0, 1] }, "peer 1 introduced", "\(d.introducedPeers)")
                let p = try WireCheckSupport.drivenPeer(d, ctx)
                let before = d.device.findingCount
                p.barWrite(0, offset: p.device.registerOffsets.doorbell, size: 4, value: 1 << 16 | 0)  // would block for ever in write()
                p.barWrite(0, offset: p.device.registerOffsets.state, size: 4, value: 9)  // the state change signals the same eventfd
                let found = d.device.findings(since: before)
                try require(found.count == 2 && found.allSatisfy { $0.requirement == "WIRE-CLI-21" && $0.kind == .environment },
                            "the doorbell and the state-change signal dropped, each an environment finding WIRE-CLI-21", found.map(\.description).joined(separator: "; "))
                try require(d.droppedSignals == 2, "2 dropped signals counted", "\(d.droppedSignals)")
                try require(d.ring(from: 0, target: 1, vector: 1) == .delivered, "the peer's other vector still delivered", "not")
            }
            try WireCheckSupport.expectAttach(ctx, what: "a pipe and a socket where eventfds belong", { s, c in
                _ = try WireCheckSupport.standardInit(s, c)
                var ends: [Int32] = [0, 0]
                guard pipe(&ends) == 0 else { throw CheckFailure(expected: "a pipe", actual: "errno \(errno)") }
                s.kept += [FileDescriptor(rawValue: ends[0]), FileDescriptor(rawValue: ends[1])]
                try s.send(c, .eventFD(id: 1, vector: 0), fd: FileDescriptor(rawValue: ends[1]))
                try s.send(c, .eventFD(id: 2, vector: 0), fd: c)
                try s.send(c, .eventFD(id: 3, vector: 0), fd: try s.eventFD().fd)
            }) { d, _ in
                try require(Monotonic.poll(timeout: 5) { d.isActive(3) }, "the good EVENT_FD after the bad ones used", "\(d.linkEvents)")
                let errors = WireCheckSupport.protocolErrors(d)
                try require(errors.count == 2 && errors.allSatisfy { $0.contains("not an eventfd") }, "2 errors naming what was sent instead of an eventfd (WIRE-CLI-11)", "\(errors)")
                try require(!d.isActive(1) && !d.isActive(2), "peers 1 and 2 not active", "\(d.activePeers)")
            }
        },
        BuiltinCheck(name: "shm-size-1", summary: "shared memory that shrinks under the device: a finding at attach, failed accesses, no SIGBUS") { ctx in
            try WireCheckSupport.expectAttach(ctx, what: "unsealed file-backed memory", { s, c in
                // A file-backed object cannot be sealed: another holder can truncate it.
                let shm = try IvshmemPosix.SharedMemory.createInDirectory("/dev/shm", size: WireCheckSupport.oneMiB)
                s.kept.append(shm)
                try s.send(c, initBytes(), fds: [shm])
                try WireCheckSupport.introduce(s, c)
            }) { d, s in
                let atAttach = d.device.findings.filter { $0.requirement == "SHM-SIZE-1" }
                try require(atAttach.count == 1 && atAttach[0].kind == .environment, "one environment finding SHM-SIZE-1 for the unsealed memory", "\(d.device.findings)")
                let p = try WireCheckSupport.drivenPeer(d, ctx)
                let rw = d.device.layout.geometry.rwSectionOffset
                try require(p.shmWrite(rw, bytes: [1, 2, 3, 4]), "a write before the truncation to succeed", "refused")
                try s.kept[0].truncate(to: 0)  // the hostile holder
                let before = d.device.findingCount
                var back = [UInt8](repeating: 0xFF, count: 4)
                let read = back.withUnsafeMutableBytes { d.device.sharedMemoryRead(offset: rw, into: $0) }
                try require(!read && back == [0, 0, 0, 0], "a read of the lost pages to fail and return zeros", "ok \(read), \(back)")
                try require(!p.shmWrite(rw, bytes: [5]), "a write to the lost pages to fail", "succeeded")
                p.barWrite(0, offset: p.device.registerOffsets.state, size: 4, value: 3)  // State: the State Table page is gone too
                let found = d.device.findings(since: before)
                try require(found.count == 3 && found.allSatisfy { $0.requirement == "SHM-SIZE-1" && $0.kind == .environment },
                            "3 environment findings SHM-SIZE-1 (read, write, state)", found.map(\.description).joined(separator: "; "))
                try require(d.device.sharedMemory.faultCount == 3, "3 faults caught", "\(d.device.sharedMemory.faultCount)")
            }
        },
    ]
}

extension AttachedDevice {
    /// The ID register through the device (link state does not matter).
    func readIDRegister() -> UInt32 { device.readRegister(device.registerOffsets.id) }
}

extension BuiltinChecks {
    // MARK: - Device behaviour while attached (DEV-PEER-*, IRQ-COAL-2)

    static let peerChecks: [BuiltinCheck] = [
        BuiltinCheck(name: "peer-gone-closes-eventfds", summary: "PEER_GONE closes the peer's eventfds; a reused ID starts again at vector 0") { ctx in
            try WireCheckSupport.expectAttach(ctx, what: "departure and reuse", { s, c in
                _ = try WireCheckSupport.standardInit(s, c)
                for v: UInt32 in 0..<2 { try s.send(c, .eventFD(id: 1, vector: v), fd: try s.eventFD().fd) }
            }) { d, s in
                try require(d.waitForPeers(timeout: 5) { $0 == [0, 1] } && Monotonic.poll(timeout: 5) { d.linkEvents.contains(.eventFD(peer: 1, vector: 1)) }, "peer 1 with 2 eventfds", "\(d.linkEvents)")
                let before = FileDescriptor.openCount()
                guard let c = s.connection else { throw CheckFailure(expected: "connection", actual: "none") }
                try s.send(c, .peerGone(id: 1))
                try require(Monotonic.poll(timeout: 5) { !d.isActive(1) }, "peer 1 inactive after PEER_GONE (DEV-PEER-1)", "\(d.activePeers)")
                let after = FileDescriptor.openCount()
                try require(after == before - 2, "both of peer 1's eventfds closed (DEV-PEER-1)", "\(before - after) closed")
                try require(d.ring(from: 0, target: 1, vector: 0) == .inactiveTarget, "a doorbell to peer 1 to find it inactive", "\(d.ring(from: 0, target: 1, vector: 0))")
                // DEV-PEER-3: the server reuses ID 1.
                let n0 = try s.eventFD(), n1 = try s.eventFD()
                try s.send(c, .eventFD(id: 1, vector: 0), fd: n0.fd)
                try require(Monotonic.poll(timeout: 5) { d.isActive(1) }, "ID 1 active again after EVENT_FD(1, 0) (DEV-PEER-3)", "\(d.linkEvents)")
                try require(d.ring(from: 0, target: 1, vector: 1) == .notYetAnnounced, "only vector 0 held for the new peer 1 (vector 1 not yet announced)", "\(d.ring(from: 0, target: 1, vector: 1))")
                try s.send(c, .eventFD(id: 1, vector: 1), fd: n1.fd)
                try require(Monotonic.poll(timeout: 5) { d.linkEvents.filter { $0 == .eventFD(peer: 1, vector: 1) }.count == 2 }, "EVENT_FD(1, 1) accepted after the reuse", "\(d.linkEvents)")
                try require(d.ring(from: 0, target: 1, vector: 1) == .delivered && (try n1.consume()) == 1, "a doorbell to the new peer 1 vector 1 reaching its new eventfd", "not")
                try require(WireCheckSupport.protocolErrors(d).isEmpty, "no protocol errors", "\(WireCheckSupport.protocolErrors(d))")
            }
        },
        BuiltinCheck(name: "peer-gone-gate", summary: "the departure event on vector 0 passes the Interrupt Control gate") { ctx in
            try WireCheckSupport.expectAttach(ctx, what: "departure interrupts", { s, c in
                _ = try WireCheckSupport.standardInit(s, c)
                for id: UInt32 in [1, 2] { try s.send(c, .eventFD(id: id, vector: 0), fd: try s.eventFD().fd) }
            }) { d, s in
                let p = try WireCheckSupport.drivenPeer(d, ctx)
                try require(d.waitForPeers(timeout: 5) { $0 == [0, 1, 2] }, "peers 0, 1, 2", "\(d.activePeers)")
                guard let c = s.connection else { throw CheckFailure(expected: "connection", actual: "none") }
                var cursor = p.interruptCount
                try s.send(c, .peerGone(id: 1))
                try require(p.waitForInterrupt(vector: 0, after: cursor, timeout: 2) != nil, "vector 0 after PEER_GONE(1) (DEV-PEER-2)", "none")
                p.barWrite(0, offset: p.device.registerOffsets.interruptControl, size: 4, value: 0)
                cursor = p.interruptCount
                try s.send(c, .peerGone(id: 2))
                try require(Monotonic.poll(timeout: 5) { !d.isActive(2) }, "peer 2 gone", "\(d.activePeers)")
                try require(p.waitForInterrupt(after: cursor, timeout: 0.2) == nil, "no interrupt with Interrupt Control 0", "an interrupt")
                p.barWrite(0, offset: p.device.registerOffsets.interruptControl, size: 4, value: 1)
                try require(p.waitForInterrupt(after: cursor, timeout: 0.2) == nil, "the gated event not delivered later", "an interrupt")
            }
        },
        BuiltinCheck(name: "peer-link-down", summary: "on server hang-up: link down, eventfds kept, config/register/shm accesses served") { ctx in
            try WireCheckSupport.expectAttach(ctx, what: "server hang-up", { s, c in
                _ = try WireCheckSupport.standardInit(s, c)
                for v: UInt32 in 0..<2 { try s.send(c, .eventFD(id: 1, vector: v), fd: try s.eventFD().fd) }  // kept[3], kept[4]
            }) { d, s in
                let p = try WireCheckSupport.drivenPeer(d, ctx)
                try require(d.waitForPeers(timeout: 5) { $0 == [0, 1] } && Monotonic.poll(timeout: 5) { d.linkEvents.contains(.eventFD(peer: 1, vector: 1)) }, "peer 1 with 2 eventfds", "\(d.linkEvents)")
                let fdsBefore = FileDescriptor.openCount()
                let ids = p.configRead(0, size: 4)
                s.hangUp()
                try require(Monotonic.poll(timeout: 5) { !d.isLinkUp }, "the link reported down after the hang-up", "still up")
                try require(d.linkEvents.contains { if case .linkDown = $0 { return true }; return false }, "a link-down event", "\(d.linkEvents)")
                try require(d.activePeers == [0, 1], "the eventfds kept: peers 0 and 1 still known", "\(d.activePeers)")
                try require(FileDescriptor.openCount() >= fdsBefore - 2, "no eventfd closed (only the socket may be)", "\(fdsBefore - FileDescriptor.openCount()) fewer fds")
                p.barWrite(0, offset: p.device.registerOffsets.doorbell, size: 4, value: 1 << 16 | 1)
                try require(try EventFD(fd: s.kept[4]).consume() == 1, "a doorbell to peer 1 vector 1 still signalling the kept eventfd", "not signalled")
                try require(ids != 0 && ids != 0xFFFF_FFFF && p.configRead(0, size: 4) == ids, "config space still served (IDs \(String(ids, radix: 16)))", String(p.configRead(0, size: 4), radix: 16))
                try require(p.barRead(0, offset: p.device.registerOffsets.maxPeers, size: 4) == 4, "Maximum Peers register still 4", "\(p.barRead(0, offset: p.device.registerOffsets.maxPeers, size: 4))")
                let rw = d.device.layout.geometry.rwSectionOffset
                p.shmWrite(rw, size: 4, value: 0xC0FFEE)
                try require(p.shmRead(rw, size: 4) == 0xC0FFEE, "shared memory still served", String(p.shmRead(rw, size: 4), radix: 16))
                let cursor = p.interruptCount
                try EventFD(fd: s.kept[2]).signal()
                try require(p.waitForInterrupt(vector: 1, after: cursor, timeout: 2) != nil, "own eventfds still served after the hang-up", "no interrupt")
            }
        },
        BuiltinCheck(name: "peer-join-no-irq", summary: "a server-attached device raises no event when another peer joins") { ctx in
            try WireCheckSupport.expectAttach(ctx, what: "a peer joins", { s, c in
                _ = try WireCheckSupport.standardInit(s, c)
            }) { d, s in
                let p = try WireCheckSupport.drivenPeer(d, ctx)
                try require(d.waitForPeers(timeout: 5) { $0 == [0] }, "own eventfds", "\(d.activePeers)")
                let cursor = p.interruptCount
                guard let c = s.connection else { throw CheckFailure(expected: "connection", actual: "none") }
                for v: UInt32 in 0..<2 { try s.send(c, .eventFD(id: 1, vector: v), fd: try s.eventFD().fd) }
                try require(Monotonic.poll(timeout: 5) { d.isActive(1) }, "peer 1 active", "\(d.activePeers)")
                try require(p.waitForInterrupt(after: cursor, timeout: 0.3) == nil, "no interrupt when peer 1 joins (DEV-PEER-5)", "an interrupt")
            }
        },
        BuiltinCheck(name: "peer-eventfd-coalesce", summary: "increments that pile up on an own eventfd before the device services it give one delivery") { ctx in
            try WireCheckSupport.expectAttach(ctx, what: "accumulated events", { s, c in
                _ = try WireCheckSupport.standardInit(s, c)
            }) { d, s in
                let p = try WireCheckSupport.drivenPeer(d, ctx)
                try require(d.waitForPeers(timeout: 5) { $0 == [0] }, "own eventfds", "\(d.activePeers)")
                // Hold the device's event loop in a link-event handler while the events pile up.
                let gate = DispatchSemaphore(value: 0)
                let entered = DispatchSemaphore(value: 0)
                d.onLinkEvent { e in
                    if e == .eventFD(peer: 1, vector: 0) {
                        entered.signal()
                        _ = gate.wait(timeout: .now() + 3)
                    }
                }
                guard let c = s.connection else { throw CheckFailure(expected: "connection", actual: "none") }
                try s.send(c, .eventFD(id: 1, vector: 0), fd: try s.eventFD().fd)
                try require(entered.wait(timeout: .now() + 3) == .success, "the event loop to reach the held handler", "it did not")
                let cursor = p.interruptCount
                let own1 = EventFD(fd: s.kept[2])
                for _ in 0..<5 {
                    try own1.signal()
                    Monotonic.sleep(seconds: 0.005)
                }
                gate.signal()
                try require(p.waitForInterrupt(vector: 1, after: cursor, timeout: 2) != nil, "one delivery on vector 1", "none")
                try require(d.settle(), "the device to catch up", "it did not")
                let n = p.platform.interrupts.since(cursor).count
                d.onLinkEvent(nil)
                try require(n == 1, "exactly 1 delivery for 5 increments accumulated on one eventfd (IRQ-COAL-2)", "\(n) deliveries")
                // And a single write of 3 is one event too.
                let c2 = p.interruptCount
                try own1.signal(3)
                try require(p.waitForInterrupt(vector: 1, after: c2, timeout: 2) != nil, "a delivery", "none")
                try require(d.settle(), "the device to catch up", "it did not")
                try require(p.platform.interrupts.since(c2).count == 1, "1 delivery for a counter of 3", "\(p.platform.interrupts.since(c2).count)")
            }
        },
    ]
}
