import IvshmemModel
import IvshmemPosix
import IvshmemTransport
import IvshmemWire
import Testing
import Synchronization
import Foundation

/// Every check a device makes on what a server sends, provoked by a scripted server. Each test
/// also checks that no file descriptor is left open afterwards (WIRE-CLI-19).
@Suite(.serialized) struct ClientValidationTests {
    static let oneMiB = 1 << 20

    func initBytes(type: UInt32 = 0, length: UInt32 = 40, compatible: UInt32 = 2, id: UInt32 = 0, maxPeers: UInt32 = 4,
                   vectors: UInt32 = 2, proto: UInt32 = 0, output: UInt64 = 0x10000, extra: [UInt8] = []) -> [UInt8] {
        rawMessage(type: type, length: length + UInt32(extra.count),
                   body: le32(2) + le32(compatible) + le32(id) + le32(maxPeers) + le32(vectors) + le32(proto) + le64(output) + extra)
    }

    /// Runs `script` on a scripted server and attaches to it. The server keeps the connection
    /// open until the caller closes it.
    func attempt(profile: String = "spec", _ script: @escaping @Sendable (ScriptedServer, FileDescriptor) throws -> Void) throws -> (ScriptedServer, Result<AttachedDevice, any Error>) {
        let server = try ScriptedServer()
        server.serve(script)
        let r = Result { try AttachedDevice.attach(socketPath: server.path, options: AttachOptions(profile: profile)) }
        server.waitForScript()
        return (server, r)
    }

    func expectAttachFails(profile: String = "spec", _ check: (any Error) -> Bool, _ script: @escaping @Sendable (ScriptedServer, FileDescriptor) throws -> Void) throws {
        let before = FileDescriptor.openCount()
        let (server, r) = try attempt(profile: profile, script)
        server.close()
        switch r {
        case .success(let d):
            d.close()
            Issue.record("attach succeeded but should have failed")
        case .failure(let e):
            #expect(check(e), "unexpected error: \(e)")
        }
        #expect(FileDescriptor.openCount() == before, "descriptors leaked by a failed attach (WIRE-CLI-19)")
    }

    @Test("WIRE-CLI-1, WIRE-CLI-19: a first message that is not INIT fails the attach and leaks nothing")
    func firstMessageNotInit() throws {
        try expectAttachFails({ "\($0)".contains("INIT") || "\($0)".contains("type") }) { s, c in
            let shm = try makeSharedMemory(size: Self.oneMiB)
            defer { shm.closeQuietly() }
            try s.send(c, self.initBytes(type: 1), fds: [shm])
        }
    }

    @Test("WIRE-CLI-1: INIT with len below 40 is rejected")
    func initTooShort() throws {
        try expectAttachFails({ "\($0)".contains("40") || "\($0)".contains("short") }) { s, c in
            let shm = try makeSharedMemory(size: Self.oneMiB)
            defer { shm.closeQuietly() }
            try s.send(c, rawMessage(type: 0, length: 32, body: Array(repeating: 0, count: 24)), fds: [shm])
        }
    }

    @Test("WIRE-CLI-2, WIRE-CLI-9: extra INIT bytes are skipped; R/W size is what the layout leaves")
    func initExtraBytesSkipped() throws {
        let before = FileDescriptor.openCount()
        let (server, r) = try attempt { s, c in
            let shm = try makeSharedMemory(size: Self.oneMiB)
            defer { shm.closeQuietly() }
            try s.send(c, self.initBytes(extra: [0xAA, 0xBB, 0xCC, 0xDD, 1, 2, 3, 4]), fds: [shm])
            let e = try EventFD.create()
            defer { e.close() }
            try s.send(c, .eventFD(id: 0, vector: 0), fd: e.fd)
        }
        defer { server.close() }
        let d = try r.get()
        // 1 MiB − 4 KiB state table − 4 × 64 KiB output sections
        #expect(d.device.layout.geometry.rwSectionSize == UInt64(Self.oneMiB) - 0x1000 - 4 * 0x10000)
        #expect(eventually { d.activePeers == [0] }, "the EVENT_FD after the padded INIT must be parsed in step")
        d.close()
        server.close()
        #expect(FileDescriptor.openCount() == before)
    }

    @Test("WIRE-CLI-3: compatible_version other than 2 is rejected")
    func incompatibleVersion() throws {
        try expectAttachFails({ "\($0)".contains("compatible") }) { s, c in
            let shm = try makeSharedMemory(size: Self.oneMiB)
            defer { shm.closeQuietly() }
            try s.send(c, self.initBytes(compatible: 1), fds: [shm])
        }
    }

    @Test("WIRE-CLI-4: an INIT id not below max_peers is rejected")
    func idNotBelowMaxPeers() throws {
        try expectAttachFails({ "\($0)".contains("4") }) { s, c in
            let shm = try makeSharedMemory(size: Self.oneMiB)
            defer { shm.closeQuietly() }
            try s.send(c, self.initBytes(id: 4, maxPeers: 4), fds: [shm])
        }
    }

    @Test("WIRE-CLI-5: max_peers outside 2…65536 is rejected")
    func maxPeersOutOfRange() throws {
        try expectAttachFails({ "\($0)".contains("max") || "\($0)".contains("peers") }) { s, c in
            let shm = try makeSharedMemory(size: Self.oneMiB)
            defer { shm.closeQuietly() }
            try s.send(c, self.initBytes(id: 0, maxPeers: 1), fds: [shm])
        }
    }

    @Test("WIRE-CLI-6: vectors 0 or above 1024 are rejected, and above the profile's limit")
    func vectorsOutOfRange() throws {
        for v: UInt32 in [0, 1025] {
            try expectAttachFails({ "\($0)".contains("vector") }) { s, c in
                let shm = try makeSharedMemory(size: Self.oneMiB)
                defer { shm.closeQuietly() }
                try s.send(c, self.initBytes(vectors: v), fds: [shm])
            }
        }
        // jailhouse allows at most 16 (IRQ-VEC-2), so 17 passes the wire check but not the device's
        try expectAttachFails(profile: "jailhouse", { "\($0)".contains("vectors") }) { s, c in
            let shm = try makeSharedMemory(size: Self.oneMiB)
            defer { shm.closeQuietly() }
            try s.send(c, self.initBytes(vectors: 17), fds: [shm])
        }
    }

    @Test("WIRE-CLI-7: INIT without the shared-memory fd is rejected")
    func initWithoutFD() throws {
        try expectAttachFails({ "\($0)".contains("WIRE-CLI-7") }) { s, c in
            try s.send(c, self.initBytes())
        }
    }

    @Test("WIRE-CLI-8, WIRE-CLI-10: shared memory too small for state table and output sections is rejected")
    func sharedMemoryTooSmall() throws {
        try expectAttachFails({ "\($0)".contains("too small") }) { s, c in
            let shm = try makeSharedMemory(size: 0x1000 + 3 * 0x10000)  // 4 peers need 4 output sections
            defer { shm.closeQuietly() }
            try s.send(c, self.initBytes(maxPeers: 4, output: 0x10000), fds: [shm])
        }
        try expectAttachFails({ "\($0)".contains("page") }) { s, c in
            let shm = try makeSharedMemory(size: Self.oneMiB)
            defer { shm.closeQuietly() }
            try s.send(c, self.initBytes(output: 0x800), fds: [shm])  // not a page multiple (DEV-CFG-4)
        }
    }

    @Test("WIRE-CLI-11, WIRE-CLI-17: out-of-order or fd-less EVENT_FD is reported, its fd closed, and the link stays up")
    func eventFDChecks() throws {
        let before = FileDescriptor.openCount()
        let (server, r) = try attempt { s, c in
            let shm = try makeSharedMemory(size: Self.oneMiB)
            defer { shm.closeQuietly() }
            try s.send(c, self.initBytes(id: 0), fds: [shm])
            let e = try EventFD.create()
            defer { e.close() }
            try s.send(c, .eventFD(id: 1, vector: 1), fd: e.fd)  // vector 1 before vector 0
            try s.send(c, .eventFD(id: 1, vector: 0))  // no fd
            try s.send(c, .eventFD(id: 1, vector: 0), fd: e.fd)  // fine
            try s.send(c, .eventFD(id: 1, vector: 1), fd: e.fd)  // fine
            try s.send(c, .eventFD(id: 1, vector: 2), fd: e.fd)  // device has 2 vectors
            try s.send(c, .eventFD(id: 9, vector: 0), fd: e.fd)  // id beyond max_peers
        }
        defer { server.close() }
        let d = try r.get()
        #expect(eventually { d.linkEvents.filter { if case .protocolError = $0 { return true }; return false }.count == 4 })
        let errors = d.linkEvents.compactMap { e -> String? in if case .protocolError(let m) = e { return m }; return nil }
        #expect(errors.contains { $0.contains("out of order") })
        #expect(errors.contains { $0.contains("without an eventfd") })
        #expect(errors.contains { $0.contains("2 vector") })
        #expect(errors.contains { $0.contains("Maximum Peers") })
        #expect(d.isActive(1) && d.isLinkUp)
        d.close()
        server.close()
        #expect(FileDescriptor.openCount() == before)
    }

    @Test("WIRE-CLI-14, WIRE-CLI-18: PEER_GONE for the own ID or an unknown ID is an error; an fd on PEER_GONE is closed")
    func peerGoneChecks() throws {
        let before = FileDescriptor.openCount()
        let (server, r) = try attempt { s, c in
            let shm = try makeSharedMemory(size: Self.oneMiB)
            defer { shm.closeQuietly() }
            try s.send(c, self.initBytes(id: 2), fds: [shm])
            try s.send(c, .peerGone(id: 2))
            try s.send(c, .peerGone(id: 3))
            let stray = try EventFD.create()
            defer { stray.close() }
            try s.send(c, WireMessage.peerGone(id: 3).encode(), fds: [stray.fd])
        }
        defer { server.close() }
        let d = try r.get()
        #expect(eventually { d.linkEvents.count >= 3 })
        let errors = d.linkEvents.compactMap { e -> String? in if case .protocolError(let m) = e { return m }; return nil }
        #expect(errors.contains { $0.contains("own ID") })
        #expect(errors.filter { $0.contains("unknown peer 3") }.count == 2)
        d.close()
        server.close()
        #expect(FileDescriptor.openCount() == before, "the fd that came with PEER_GONE must be closed")
    }

    @Test("WIRE-GEN-4: the device never writes to the server socket, whatever the driver does")
    func deviceNeverWrites() throws {
        let written = Mutex<Int?>(nil)
        let server = try ScriptedServer()
        defer { server.close() }
        let go = DispatchSemaphore(value: 0)
        server.serve { s, c in
            let shm = try makeSharedMemory(size: Self.oneMiB)
            defer { shm.closeQuietly() }
            try s.send(c, self.initBytes(id: 0), fds: [shm])
            let own = try EventFD.create(), other = try EventFD.create()
            defer { own.close(); other.close() }
            try s.send(c, .eventFD(id: 1, vector: 0), fd: other.fd)
            try s.send(c, .eventFD(id: 0, vector: 0), fd: own.fd)
            go.wait()
            try c.setNonBlocking(true)
            var buf = [UInt8](repeating: 0, count: 64)
            do {
                let n = try buf.withUnsafeMutableBytes { try c.read(into: $0) }
                written.withLock { $0 = n }
            } catch let e as SystemCallError where e.errno == .wouldBlock {
                written.withLock { $0 = 0 }
            }
        }
        let d = try AttachedDevice.attach(socketPath: server.path)
        defer { d.close() }
        #expect(eventually { d.activePeers == [0, 1] })
        d.device.writeRegister(0x10, 5)            // state change: vector 0 at peer 1
        d.device.writeRegister(0x0C, 1 << 16)      // doorbell to peer 1
        d.device.writeRegister(0x0C, 0)            // doorbell to itself
        d.device.reset()
        go.signal()
        server.waitForScript()
        #expect(written.withLock { $0 } == 0, "the device wrote to the server socket")
    }

    @Test("WIRE-CLI-15, WIRE-CLI-16: a len below the message's size, an unknown type or a second INIT are reported")
    func malformedLaterMessages() throws {
        let (server, r) = try attempt { s, c in
            let shm = try makeSharedMemory(size: Self.oneMiB)
            defer { shm.closeQuietly() }
            try s.send(c, self.initBytes(id: 0), fds: [shm])
            try s.send(c, rawMessage(type: 1, length: 12, body: le32(1)))  // EVENT_FD must be 16
            try s.send(c, rawMessage(type: 7, length: 12, body: le32(1)))  // unknown type
            try s.send(c, self.initBytes(id: 0))  // INIT again
            let e = try EventFD.create()
            defer { e.close() }
            try s.send(c, .eventFD(id: 1, vector: 0), fd: e.fd)  // and a good one still works (WIRE-CLI-17)
        }
        defer { server.close() }
        let d = try r.get()
        defer { d.close() }
        #expect(eventually { d.isActive(1) })
        let errors = d.linkEvents.compactMap { e -> String? in if case .protocolError(let m) = e { return m }; return nil }
        #expect(errors.count == 3, "\(errors)")
        #expect(errors.contains { $0.contains("INIT") })
    }
}
