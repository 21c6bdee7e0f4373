import IvshmemLink
import IvshmemPosix
import IvshmemServer
import IvshmemTransport
import IvshmemWire
import Logging
import IvshmemTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The v1 server (spec/ivshmem1.md §7) on the shared event loop, embedded and as
/// `ivshmem2 server-v1`, with ``V1ServerConnection`` as an independent v1 client.
extension IvshmemServerTestSuite {
@Suite("v1 server")
struct V1ServerTests {
    static let quiet = Logger(label: "test.server-v1") { _ in SwiftLogNoOpLogHandler() }

    func configuration(_ scratch: ScratchDirectory, vectors: UInt64 = 2) -> ServerConfiguration {
        var config = ServerConfiguration.v1()
        config.socketPath = scratch.file("sock")
        config.backing = .memfd
        config.size = 1 << 20
        config.vectors = vectors
        return config
    }

    /// Connects and reads the whole introduction.
    func join(_ path: String, vectors: Int = 2) throws -> V1ServerConnection {
        let client = try V1ServerConnection(path: path, vectors: vectors)
        try client.attach()
        return client
    }

    /// Runs `body` with a v1 server on its own thread (socket path given), `adjust`ing the
    /// configuration first; every descriptor must be closed afterwards.
    func withServer(vectors: UInt64 = 2, _ adjust: (inout ServerConfiguration) -> Void = { _ in },
                    _ body: (ServerThread, String) throws -> Void) throws {
        try expectNoDescriptorLeak {
            let scratch = try ScratchDirectory()
            var config = configuration(scratch, vectors: vectors)
            adjust(&config)
            let running = try ServerThread.start(configuration: config, logger: Self.quiet)
            defer { running.stop() }
            try body(running, scratch.file("sock"))
        }
    }

    @Test("V1-WIRE-SEQ-1, V1-WIRE-SEQ-2, V1-WIRE-SEQ-3, V1-WIRE-SEQ-4, V1-WIRE-SEQ-5, V1-WIRE-SEQ-6, V1-SHM-SIZE-1: three peers join; each message in the reference's order, with or without its descriptor")
    func joinSequence() throws {
        try withServer { _, path in
            let a = try join(path)
            typealias R = V1ServerConnection.Received
            let greeting = { (id: Int64) in [R(value: 0, hadDescriptor: false), R(value: id, hadDescriptor: false), R(value: -1, hadDescriptor: true)] }
            let vectorsOf = { (id: Int64) in [R(value: id, hadDescriptor: true), R(value: id, hadDescriptor: true)] }
            #expect(a.received == greeting(0) + vectorsOf(0))
            #expect(try a.sharedMemory?.size() == 1 << 20)
            let b = try join(path)
            #expect(b.received == greeting(1) + vectorsOf(0) + vectorsOf(1))
            #expect(try a.receive(2))
            #expect(Array(a.received.suffix(2)) == vectorsOf(1))
            let c = try join(path)
            #expect(c.received == greeting(2) + vectorsOf(0) + vectorsOf(1) + vectorsOf(2))
            #expect(try a.receive(2) && b.receive(2))
            #expect(Array(a.received.suffix(2)) == vectorsOf(2) && Array(b.received.suffix(2)) == vectorsOf(2))
            #expect(a.errors.isEmpty && b.errors.isEmpty && c.errors.isEmpty)
            // The eventfds are shared: a ring from C reaches A's own eventfd for vector 1.
            #expect(try c.ring(peer: 0, vector: 1))
            #expect(try a.ownEventFD(vector: 1)?.wait(timeoutMilliseconds: 5000) == true)
            for client in [a, b, c] { client.close() }
        }
    }

    @Test("V1-WIRE-GONE-1, V1-SRV-GONE-1, V1-WIRE-GEN-2, V1-WIRE-CLI-7: a hang-up and a peer that sends data both depart; the others get the ID without a descriptor and drop its eventfds")
    func departures() throws {
        try withServer(vectors: 1) { running, path in
            let a = try join(path, vectors: 1), b = try join(path, vectors: 1), c = try join(path, vectors: 1)
            #expect(try a.receive(2) && b.receive(1))
            b.close()
            #expect(try a.receive(1) && c.receive(1))
            #expect(a.received.last == .init(value: 1, hadDescriptor: false) && c.received.last == .init(value: 1, hadDescriptor: false))
            #expect(a.eventFDs[1] == nil && a.events.last == .peerGone(id: 1))
            #expect(try !a.ring(peer: 1, vector: 0), "no eventfd for a departed peer")
            try c.sendGarbage()
            #expect(try c.waitForHangUp())
            #expect(try a.receive(1))
            #expect(a.received.last == .init(value: 2, hadDescriptor: false))
            #expect(Monotonic.poll(timeout: 5) { running.server.connectedPeerIDs == [0] })
            #expect(running.server.counters.departed == 2)
            #expect(a.errors.isEmpty)
            for client in [a, c] { client.close() }
        }
    }

    @Test("V1-SRV-ID-1: IDs are handed out in turn, not the lowest free one; they wrap to 0")
    func idsInTurn() throws {
        var ids = PeerIDAllocator(capacity: 4, policy: .inTurn)
        #expect(ids.allocate() == 0 && ids.allocate() == 1)
        ids.release(0)
        #expect(ids.allocate() == 2 && ids.allocate() == 3)
        #expect(ids.allocate() == 0, "wraps and skips nothing free")
        ids.release(2)
        #expect(ids.allocate() == 2, "1 is in use: the next free after 0")
        #expect(ids.allocate() == nil)

        try withServer(vectors: 1) { running, path in
            let a = try join(path, vectors: 1), b = try join(path, vectors: 1)
            a.close()
            #expect(try b.receive(1), "B sees A leave")
            let c = try join(path, vectors: 1)
            #expect(c.ownID == 2, "the reference does not reuse 0 at once")
            for client in [b, c] { client.close() }
        }
    }

    @Test("V1-SRV-ID-2: with every ID taken a newcomer is closed without a message and the others are still served")
    func allIDsTaken() throws {
        try withServer(vectors: 1, { $0.maxPeers = 2 /* stands for 65536 (V1-SRV-ID-2 is the same rule) */ }) { running, path in
            let a = try join(path, vectors: 1), b = try join(path, vectors: 1)
            let refused = try V1ServerConnection(path: path, vectors: 1)
            #expect(try refused.waitForHangUp())
            #expect(refused.received.isEmpty)
            #expect(Monotonic.poll(timeout: 5) { running.server.counters.refused == 1 })
            b.close()
            #expect(try a.receive(2))
            let d = try join(path, vectors: 1)
            #expect(d.ownID == 0 || d.ownID == 1)
            for client in [a, refused, d] { client.close() }
        }
    }

    @Test("V1-SRV-SHM-1, V1-SHM-BAR-1: the server never writes the shared memory: bytes at offset 0 survive a departure (a v2 server zeroes its State Table there)")
    func memoryUntouched() throws {
        try withServer(vectors: 1) { running, path in
            let a = try join(path, vectors: 1), b = try join(path, vectors: 1)
            do {
                let memory = try a.mapSharedMemory()
                for offset in stride(from: 0, to: 16, by: 4) { memory.store32(0xA5A5_0000 | UInt32(offset), at: offset) }
                memory.store32(0x1234_5678, at: (1 << 20) - 4)
            }
            a.close()
            #expect(try b.receive(1))
            let c = try join(path, vectors: 1)
            let seen = try c.mapSharedMemory()
            #expect(seen.size == 1 << 20)
            for offset in stride(from: 0, to: 16, by: 4) { #expect(seen.load32(at: offset) == 0xA5A5_0000 | UInt32(offset)) }
            #expect(seen.load32(at: (1 << 20) - 4) == 0x1234_5678)
            for client in [b, c] { client.close() }
        }
    }

    @Test("V1-SRV-CFG-1: the reference's defaults: /tmp/ivshmem_socket, POSIX object ivshmem, 4 MiB, 1 vector; the CLI's help lists its options")
    func defaults() throws {
        let config = ServerConfiguration.v1()
        #expect(config.dialect == .v1)
        #expect(config.socketPath == "/tmp/ivshmem_socket")
        #expect(config.backing == .posix(name: "ivshmem"))
        #expect(config.size == 4 << 20 && config.vectors == 1)
        #expect(config.mode == 0o600)
        let help = try ServerProcess.run(["server-v1", "--help"])
        for option in ["-S", "-M", "-m", "-l", "-n", "-F", "-p", "-v", "/var/run/ivshmem-server.pid", "4M"] {
            #expect(help.standardOutput.contains(option), "\(option) in: \(help.standardOutput)")
        }
    }

    @Test("V1-SRV-CFG-2: vectors outside 1…64 and sizes that are not a power of two are refused, naming the option")
    func refusedOptions() throws {
        let scratch = try ScratchDirectory()
        let sock = scratch.file("sock")
        for (arguments, option) in [(["-n", "0"], "-n"), (["-n", "65"], "-n"), (["-l", "3000"], "-l"), (["-l", "1000000"], "-l"), (["-l", "12K"], "-l")] {
            let result = try ServerProcess.run(["server-v1", "-F", "-S", sock, "--memfd"] + arguments)
            #expect(result.status != .exited(0), "\(arguments)")
            #expect(result.standardError.contains(option), "\(arguments): \(result.standardError)")
        }
        #expect(try FileSystem.status(ofPath: sock) == nil, "nothing was bound")
    }

    @Test("V1-SRV-ROB-1: ivshmem2 server-v1 -F -S SOCK -l 1M -n 2: a 0600 socket, a live socket refused, a stale one replaced, a non-reading peer costs the others nothing, clean exit on SIGTERM")
    func processRobustness() throws {
        try expectNoDescriptorLeak {
            let scratch = try ScratchDirectory()
            let sock = scratch.file("sock")
            let stale = try UnixSocket.listen(path: sock)
            stale.closeQuietly()
            let server = try ServerProcess(arguments: ["-F", "-S", sock, "-l", "1M", "-n", "2", "--memfd"], socketPath: sock, scratch: scratch, subcommand: "server-v1")
            #expect(server.log.contains("stale"), "\(server.log)")
            #expect(try FileSystem.status(ofPath: sock)?.permissions == 0o600)
            let second = try ServerProcess.run(["server-v1", "-F", "-S", sock, "--memfd"])
            #expect(second.status == .exited(1) && second.standardError.contains("already listening"), "\(second.standardError)")

            // A peer that never reads, then many joins and departures around it.
            let sleeper = try UnixSocket.connect(path: sock)
            let a = try join(sock)
            for _ in 0..<50 {
                let passer = try join(sock)
                passer.close()
            }
            #expect(try a.receive(until: { $0.received.count >= 5 + 2 + 50 * 3 }, timeout: 20), "A saw every join and departure: \(a.received.count)")
            #expect(a.errors.isEmpty, "\(a.errors)")
            sleeper.closeQuietly()
            #expect(try server.terminate() == .exited(0))
            #expect(try a.waitForHangUp())
            #expect(try FileSystem.status(ofPath: sock) == nil)
            a.close()
        }
    }
}
}
