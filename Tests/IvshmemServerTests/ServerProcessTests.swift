import IvshmemPosix
import IvshmemServer
import IvshmemWire
import Testing
import IvshmemTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The `ivshmem2 server` executable as a real process, with real UNIX sockets, eventfds and
/// shared memory, driven by raw wire-protocol clients. Serialized: they spawn processes and
/// count descriptors.
extension IvshmemServerTestSuite {
@Suite("Server process")
struct ServerProcessTests {

    // MARK: The reference capture

    @Test("SRV-REF-1, SRV-INIT-1, WIRE-SEQ-1, WIRE-SEQ-2, WIRE-SEQ-3, WIRE-SEQ-4, WIRE-SEQ-5, SRV-GONE-2, SRV-GONE-3, SRV-ID-1: the reference capture replayed against the server process: bytes and fd counts message for message, eventfds that fire, entries zeroed before PEER_GONE")
    func referenceCapture() throws {
        // The replay lives in the harness (server-reference.ivs: the server-reference-capture
        // check and the raw-client timeline): one implementation, run here once.
        try expectNoDescriptorLeak {
            let (passed, report) = try ConformanceScripts.run("server-reference.ivs")
            #expect(passed, "\(report)")
        }
    }

    // MARK: Joining and leaving

    @Test("WIRE-SEQ-2, WIRE-SEQ-3, WIRE-SEQ-4, WIRE-SEQ-5, SRV-ID-1, SRV-GONE-3: 4 peers join and leave; ids are reused, connection order is kept")
    func joinLeaveReuse() throws {
        try expectNoDescriptorLeak {
            let scratch = try ScratchDirectory()
            let sock = scratch.file("sock")
            let server = try ServerProcess(arguments: ["-F", "-S", sock, "-n", "8", "-V", "3", "-l", "1M"], socketPath: sock, scratch: scratch)
            func info(_ id: UInt32) -> InitialInfo { InitialInfo(id: id, maxPeers: 8, vectors: 3, protocol: 0, outputSectionSize: 0) }

            var clients: [RawClient] = []
            var order: [UInt32] = []
            for id in UInt32(0)..<4 {
                let newcomer = try RawClient(name: "P\(id)", path: sock)
                let setup = try newcomer.receive(1 + 3 * (order.count + 1))
                #expect(setup.decoded() == expectedSetup(id: id, existing: order, vectors: 3, info: info(id)))
                for existing in clients {
                    #expect(try existing.receive(3).decoded(firstIsInitial: false) == eventFDs(of: id, vectors: 3))
                }
                clients.append(newcomer)
                order.append(id)
            }
            // P1 leaves: the others get PEER_GONE(1); the next newcomer gets id 1 and sees the
            // others in connection order (0, 2, 3).
            clients[1].close()
            for i in [0, 2, 3] { #expect(try clients[i].receive(1).decoded(firstIsInitial: false) == [.peerGone(id: 1)]) }
            let again = try RawClient(name: "P1'", path: sock)
            #expect(try again.receive(1 + 3 * 4).decoded() == expectedSetup(id: 1, existing: [0, 2, 3], vectors: 3, info: info(1)))
            for i in [0, 2, 3] { #expect(try clients[i].receive(3).decoded(firstIsInitial: false) == eventFDs(of: 1, vectors: 3)) }
            // P0 leaves: a newcomer gets id 0 and sees 2, 3, 1 (connection order, not id order).
            clients[0].close()
            for c in [clients[2], clients[3], again] { #expect(try c.receive(1).decoded(firstIsInitial: false) == [.peerGone(id: 0)]) }
            let zero = try RawClient(name: "P0'", path: sock)
            #expect(try zero.receive(1 + 3 * 4).decoded() == expectedSetup(id: 0, existing: [2, 3, 1], vectors: 3, info: info(0)))
            for c in [clients[2], clients[3], again] {
                #expect(try c.receive(3).decoded(firstIsInitial: false) == eventFDs(of: 0, vectors: 3))
                #expect(try c.receiveUntilQuiet(quiet: 0.05).isEmpty)
            }
            for c in clients + [again, zero] { c.close() }
            #expect(try server.terminate() == .exited(0))
        }
    }

    @Test("SRV-GONE-1: a peer that sends any data is freed like one that hangs up")
    func dataMeansDeparture() throws {
        try expectNoDescriptorLeak {
            let scratch = try ScratchDirectory()
            let sock = scratch.file("sock")
            let server = try ServerProcess(arguments: ["-F", "-S", sock, "-n", "3"], socketPath: sock, scratch: scratch)
            let p0 = try RawClient(name: "P0", path: sock)
            try p0.receive(2)
            let p1 = try RawClient(name: "P1", path: sock)
            try p1.receive(3)
            try p0.receive(1)
            let mem = try p0.mapSharedMemory()
            mem.store32(0x1234, at: 4)
            try p1.sendGarbage()
            #expect(try p1.waitForHangUp())
            #expect(try p0.receive(1).decoded(firstIsInitial: false) == [.peerGone(id: 1)])
            #expect(mem.load32(at: 4) == 0)
            p0.close(); p1.close()
            #expect(try server.terminate() == .exited(0))
        }
    }

    // MARK: Shared memory

    @Test("SRV-SHM-2, SRV-SHM-3, SRV-SHM-1, SRV-SIG-1: a stale State Table in an existing shm object is zeroed; 0600; unlinked at exit")
    func stateTableZeroedAtStart() throws {
        try expectNoDescriptorLeak {
            let scratch = try ScratchDirectory()
            let sock = scratch.file("sock")
            let name = uniqueShmName("stale")
            // A leftover object full of old content.
            let old = try SharedMemory.openNamed(name, size: 256 << 10, mode: 0o600)  // ours and private (SRV-SHM-7)
            do {
                let map = try MemoryMapping(fd: old, size: 256 << 10)
                for offset in stride(from: 0, to: 256 << 10, by: 4) { map.store32(0xDEAD_BEEF, at: offset) }
            }
            old.closeQuietly()

            let server = try ServerProcess(arguments: ["-F", "-S", sock, "-M", name, "-l", "128K", "-n", "4"], socketPath: sock, scratch: scratch)
            let st = try #require(try FileSystem.status(ofPath: "/dev/shm/" + name))
            #expect(st.permissions == 0o600, "SRV-SHM-3: shm mode")
            #expect(st.size == 128 << 10, "SRV-SHM-1: exactly the configured size")
            let sockStatus = try #require(try FileSystem.status(ofPath: sock))
            #expect(sockStatus.permissions == 0o600, "SRV-SHM-3: socket mode")

            let client = try RawClient(name: "P0", path: sock)
            try client.receive(2)
            let mem = try client.mapSharedMemory()
            #expect(mem.size == 128 << 10)
            let table = (0..<1024).map { mem.load32(at: $0 * 4) }
            #expect(table.allSatisfy { $0 == 0 }, "the whole 4 KiB State Table is zero")
            #expect(mem.load32(at: 4096) == 0xDEAD_BEEF, "only the State Table is cleared")
            client.close()
            #expect(try server.terminate() == .exited(0))
            #expect(try FileSystem.status(ofPath: "/dev/shm/" + name) == nil, "SRV-SIG-1: named shm unlinked")
            #expect(try FileSystem.status(ofPath: sock) == nil, "SRV-SIG-1: socket unlinked")
        }
    }

    // MARK: Virtio

    @Test("SRV-VIRTIO-1: with a virtio protocol peer 0 gets bit 0x4000 set (back-end), peer 1 cleared (front-end), also after reuse")
    func virtioRoles() throws {
        try expectNoDescriptorLeak {
            let scratch = try ScratchDirectory()
            let sock = scratch.file("sock")
            let server = try ServerProcess(arguments: ["-F", "-S", sock, "-P", "0x8003"], socketPath: sock, scratch: scratch)
            let backEnd = try RawClient(name: "be", path: sock)
            try backEnd.receive(2)
            let frontEnd = try RawClient(name: "fe", path: sock)
            try frontEnd.receive(3)
            #expect(backEnd.initial?.protocol == 0xC003)
            #expect(frontEnd.initial?.protocol == 0x8003)
            backEnd.close()
            #expect(try frontEnd.receive(1).decoded(firstIsInitial: false) == [.peerGone(id: 0)])
            let backEnd2 = try RawClient(name: "be2", path: sock)
            try backEnd2.receive(3)
            #expect(backEnd2.initial?.id == 0)
            #expect(backEnd2.initial?.protocol == 0xC003)
            frontEnd.close(); backEnd2.close()
            #expect(try server.terminate() == .exited(0))
        }
    }

    // MARK: Robustness

    @Test("SRV-ID-1, SRV-ID-2: a peer that leaves and at once reconnects to a full server gets its id back every time, never a refusal")
    func reconnectRightAfterLeaving() throws {
        try expectNoDescriptorLeak {
            let scratch = try ScratchDirectory()
            let sock = scratch.file("sock")
            let server = try ServerProcess(arguments: ["-F", "-S", sock, "-n", "2", "-V", "1", "-l", "64K"], socketPath: sock, scratch: scratch)
            let a = try RawClient(name: "A", path: sock)
            try a.receive(2)
            var b = try RawClient(name: "B0", path: sock)
            try b.receive(3)
            try a.receive(1)
            // The hang-up and the new connection often reach the server in one wake-up.
            for i in 1...300 {
                b.close()
                b = try RawClient(name: "B\(i)", path: sock)
                try b.receive(3)  // throws when the server refused it
                #expect(b.initial?.id == 1)
                #expect(try a.receive(2).decoded(firstIsInitial: false) == [.peerGone(id: 1), .eventFD(id: 1, vector: 0)])
            }
            b.close(); a.close()
            #expect(!server.log.contains("refusing connection"), "\(server.log)")
            #expect(try server.terminate() == .exited(0))
        }
    }

    @Test("SRV-ID-2, SRV-IO-1, SRV-IO-2, SRV-IO-3: the ID and sending conformance cases (a connection beyond max peers gets not a byte, a peer that never reads stalls nobody and later gets everything in order with its own fds, failed sends) pass against the server")
    func idAndSendingConformanceCases() throws {
        // The checks live in the harness (server-ids.ivs, server-io.ivs): one implementation.
        try expectNoDescriptorLeak {
            for file in ["server-ids.ivs", "server-io.ivs"] {
                let (passed, report) = try ConformanceScripts.run(file)
                #expect(passed, "\(file): \(report)")
            }
        }
    }

    @Test("SRV-IO-3, SRV-GONE-1: peers that die mid-set-up are freed; the others see them come and go; the server keeps running")
    func peerDiesDuringSetup() throws {
        try expectNoDescriptorLeak {
            let scratch = try ScratchDirectory()
            let sock = scratch.file("sock")
            let server = try ServerProcess(arguments: ["-F", "-S", sock, "-n", "4", "-V", "8"], socketPath: sock, scratch: scratch)
            let p0 = try RawClient(name: "P0", path: sock)
            try p0.receive(9)
            for round in 0..<20 {
                // Connect and vanish at once, or after reading only part of the set-up.
                let ghost = try RawClient(name: "ghost\(round)", path: sock, keepDescriptors: false)
                if round % 2 == 1 { try ghost.receive(2) }
                ghost.close()
                let seen = try p0.receive(9)  // its 8 eventfds, then PEER_GONE
                #expect(seen.decoded(firstIsInitial: false) == eventFDs(of: 1, vectors: 8) + [.peerGone(id: 1)])
            }
            let late = try RawClient(name: "late", path: sock)
            try late.receive(1 + 16)
            #expect(late.initial?.id == 1)
            p0.close(); late.close()
            #expect(server.isRunning)
            #expect(try server.terminate() == .exited(0))
        }
    }

    // MARK: Options

    @Test("SRV-CFG-1, SRV-CFG-2, SRV-CFG-3, SRV-VIRTIO-2: the configuration conformance cases (defaults, every bad option refused naming it, the limits accepted, ST derivation, virtio peer limit) pass against the server process")
    func configurationConformanceCases() throws {
        try expectNoDescriptorLeak {
            for file in ["server-config.ivs", "server-virtio.ivs"] {
                let (passed, report) = try ConformanceScripts.run(file)
                #expect(passed, "\(file): \(report)")
            }
        }
    }

    @Test("SRV-SHM-1, SRV-SHM-3, SRV-SHM-4, SRV-SOCK-1, SRV-SOCK-2, SRV-SIG-1: the file conformance cases (exact size, 0600 files, -m unlinked at once, live and stale sockets, SIGTERM/SIGINT clean-up) pass against the server process")
    func fileConformanceCases() throws {
        // The checks live in the harness (server-files.ivs, run by the conformance suite in every
        // profile): one implementation, run here once so that `swift test` alone catches a regression.
        try expectNoDescriptorLeak {
            let (passed, report) = try ConformanceScripts.run("server-files.ivs")
            #expect(passed, "\(report)")
        }
    }

    @Test("SRV-CFG-1: without -F the server detaches, writes its pid file, and serves until SIGTERM")
    func daemonMode() throws {
        try expectNoDescriptorLeak {
            let scratch = try ScratchDirectory()
            let sock = scratch.file("sock")
            let pidFile = scratch.file("server.pid")
            let log = try FileDescriptor.open(scratch.file("daemon.log"), flags: O_WRONLY | O_CREAT | O_TRUNC)
            let parent = try SpawnedProcess.spawn(
                executable: try BuiltProducts.ivshmem2(), arguments: ["server", "-S", sock, "-p", pidFile],
                standardInput: .null, standardOutput: .descriptor(log), standardError: .descriptor(log))
            log.closeQuietly()
            #expect(try parent.waitWithTimeout(seconds: 10) == .exited(0))
            let text = String(decoding: try FileSystem.readFile(pidFile), as: UTF8.self)
            let pid = try #require(text.split(whereSeparator: \.isWhitespace).first.flatMap { pid_t($0) })
            #expect(pid != parent.pid)
            #expect(SpawnedProcess.exists(pid))
            let client = try RawClient(name: "P0", path: sock)
            try client.receive(2)
            client.close()
            #expect(kill(pid, SIGTERM) == 0)
            _ = try Monotonic.poll(timeout: 10, interval: 0.02) { try FileSystem.status(ofPath: sock) == nil }
            #expect(try FileSystem.status(ofPath: sock) == nil, "the daemon cleaned up after SIGTERM")
        }
    }
}
}
