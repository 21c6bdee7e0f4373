import IvshmemModel
import IvshmemPosix
import IvshmemQEMUProxy
import Testing

/// Messages QEMU 7.2 never sends: a clear error naming the command and where the message
/// starts, the link closed (QEMU sees it fail), every descriptor closed, nothing hangs.
@Suite("QEMU proxy endpoint: malformed messages")
struct MalformedMessageTests {
    struct Case: Sendable, CustomStringConvertible {
        var name: String
        var command: Int32
        var size: UInt64?
        var payload: [UInt8] = []
        var descriptors = 0
        var kind: ProxyLinkError.Kind
        var description: String { name }
    }

    static let cases: [Case] = [
        Case(name: "unknown command 9", command: 9, kind: .unknownCommand),
        Case(name: "negative command", command: -1, kind: .unknownCommand),
        Case(name: "RET from QEMU", command: 1, payload: [0, 0, 0, 0, 0, 0, 0, 0], kind: .unknownCommand),
        Case(name: "config read of size 8", command: 3, payload: [0, 0, 0, 0, 0, 0, 0, 0], kind: .badSize),
        Case(name: "size 2^40 announced", command: 5, size: 1 << 40, kind: .badSize),
        Case(name: "config read of 3 bytes", command: 3, payload: ProxyConfigAccess(address: 0, length: 3).payload, kind: .badField),
        Case(name: "config read beyond 256 bytes", command: 3, payload: ProxyConfigAccess(address: 0x100, length: 4).payload, kind: .badField),
        Case(name: "BAR read of 16 bytes", command: 5, payload: ProxyBarAccess(address: 0, size: 16).payload, kind: .badField),
        Case(name: "SET_IRQFD with one descriptor", command: 6, descriptors: 1, kind: .badDescriptors),
        Case(name: "SET_IRQFD with sockets for eventfds", command: 6, descriptors: 2, kind: .badDescriptors),
        Case(name: "config read carrying a descriptor", command: 3, payload: ProxyConfigAccess(address: 0, length: 4).payload, descriptors: 1, kind: .badDescriptors),
        Case(name: "memory sync with 9 descriptors", command: 0, payload: [UInt8](repeating: 0, count: 192), descriptors: 9, kind: .badDescriptors),
        Case(name: "header cut short at end of stream", command: 3, size: nil, kind: .truncated),
    ]

    @Test("A malformed message fails the link with an error naming command and offset, closing every descriptor (CFG-ACC-2)", arguments: cases)
    func malformed(_ c: Case) throws {
        let q = try FakeQEMU()
        #expect(try q.configRead(0x00, 2) == 0x110A)  // one good message first: offset 28
        let goodBytes: UInt64 = 16 + 12
        let probes = try FakeQEMU.descriptorProbes(c.descriptors)
        defer { for fd in probes.partners { fd.closeQuietly() } }
        if c.kind == .truncated {
            _ = try UnixSocket.sendMessage(on: q.socket, bytes: Array(ProxyFrame.header(command: c.command, size: 12).prefix(7)))
            try UnixSocket.shutdown(q.socket)
        } else {
            try q.send(c.command, size: c.size, payload: c.payload, fds: probes.passed)
        }
        for fd in probes.passed { fd.closeQuietly() }
        let end = q.waitForEnd()
        #expect(end.ended)
        let error = try #require(end.error)
        #expect(error.kind == c.kind)
        #expect(error.offset == goodBytes)
        if c.kind != .truncated { #expect(error.command == c.command) }
        if c.kind == .truncated { #expect(error.command == nil) }
        #expect(error.description.contains("stream offset \(goodBytes)"))
        #expect(error.description.contains("command") || error.description.contains("incomplete header"))
        if c.kind != .truncated { #expect(try q.linkClosedByEndpoint()) }
        // Every descriptor that came with the message was closed (not only the ones it kept).
        for fd in probes.partners { #expect(try FakeQEMU.sawEndOfFile(fd)) }
        q.socket.closeQuietly()
    }
}

@Suite("QEMU proxy endpoint: stalled sender")
struct StalledSenderTests {
    @Test("A message left incomplete fails the link after the completion timeout instead of hanging it (CFG-ACC-2)")
    func stalled() throws {
        let q = try FakeQEMU()  // completion timeout 2 s
        _ = try UnixSocket.sendMessage(on: q.socket, bytes: Array(ProxyFrame.header(command: 3, size: 12)) + [0, 0])
        let end = q.waitForEnd(timeout: 20)
        #expect(end.ended)
        let error = try #require(end.error)
        #expect(error.kind == .truncated)
        #expect(error.command == 3 && error.offset == 0)
        #expect(error.description.contains("incomplete"))
        #expect(try q.linkClosedByEndpoint())
        q.socket.closeQuietly()
    }
}
