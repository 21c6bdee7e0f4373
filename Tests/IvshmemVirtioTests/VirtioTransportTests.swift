#if canImport(Glibc)
import Glibc
#endif
import IvshmemHarness
import IvshmemPosix
import IvshmemServer
import IvshmemVirtio
import Logging
import Testing

/// A server for one virtio link: 2 peers, 2 vectors, 1 MiB, no output sections, and the
/// back-end's protocol (C000h | device ID); the server hands peer 0 the back-end protocol.
final class VirtioServer {
    let directory: String
    let path: String
    let thread: ServerThread

    init(deviceID: UInt16, vectors: UInt64 = 2) throws {
        directory = try FileSystem.makeTemporaryDirectory(template: "/tmp/ivshmem2-virtio-test.XXXXXX")
        path = directory + "/sock"
        var c = ServerConfiguration()
        c.socketPath = path
        c.maxPeers = 2
        c.vectors = vectors
        c.size = 1 << 20
        c.outputSectionSize = 0
        c.protocolValue = 0xC000 | UInt64(deviceID)
        var logger = Logger(label: "virtio-test-server")
        logger.logLevel = .critical
        thread = try ServerThread.start(configuration: c, logger: logger)
    }

    deinit {
        thread.stop()
        FileSystem.removeDirectoryTree(directory)
    }
}

@Suite(.serialized) struct VirtioTransportTests {
    let console: UInt16 = VirtioDeviceID.console

    /// Runs a scenario of the conformance suite on a fresh server for `deviceID`.
    func run(_ deviceID: UInt16, vectors: UInt64 = 2, _ profile: String, _ scenario: (String, String) throws -> Void) throws {
        let s = try VirtioServer(deviceID: deviceID, vectors: vectors)
        try scenario(s.path, profile)
    }

    @Test("console bytes both ways between a back-end and a front-end over the server (VIRTIO-CON-1 VIRTIO-NOTIFY-1 VIRTIO-NOTIFY-3 VIRTIO-STATE-1 VIRTIO-STATE-2)")
    func consoleRoundTrip() throws { try run(console, "spec", VirtioChecks.consoleRoundTrip) }

    @Test("console round trip with one vector: kicks, used buffers and config all on vector 0 (VIRTIO-NOTIFY-1 VIRTIO-NOTIFY-3)")
    func consoleOneVector() throws { try run(console, vectors: 1, "spec", VirtioChecks.consoleRoundTrip) }

    @Test("block: a pattern written through the front-end reads back and is in the file; past the end is IOERR (VIRTIO-BLK-1 VIRTIO-BLK-2 VIRTIO-Q-5)")
    func blockRoundTrip() throws { try run(VirtioDeviceID.block, "spec", VirtioChecks.blockRoundTrip) }

    @Test("block round trip under the jailhouse profile (VIRTIO-BLK-1)")
    func blockJailhouse() throws { try run(VirtioDeviceID.block, "jailhouse", VirtioChecks.blockRoundTrip) }

    @Test("feature negotiation: the offer, the driver's words, refusal without VERSION_1 or with features not offered (VIRTIO-FEAT-1 VIRTIO-FEAT-2 VIRTIO-FEAT-3 VIRTIO-FEAT-4)")
    func features() throws { try run(console, "spec", VirtioChecks.featureNegotiation) }

    @Test("the header's fields at their offsets, queue_sel, transactions applied once, read-only fields (VIRTIO-HDR-1 VIRTIO-HDR-2 VIRTIO-Q-1 VIRTIO-WT-1 VIRTIO-WT-2 VIRTIO-WT-4)")
    func header() throws { try run(console, "spec", VirtioChecks.headerAndTransactions) }

    @Test("a write transaction the back-end never clears is a finding (VIRTIO-WT-3)")
    func transactionStuck() throws { try run(console, "spec", VirtioChecks.transactionNeverCleared) }

    @Test("status 0 resets the device; DRIVER_OK without FEATURES_OK is a finding (VIRTIO-STATUS-1 VIRTIO-STATUS-2)")
    func status() throws { try run(console, "spec", VirtioChecks.statusRules) }

    @Test("queue violations: size, rings and buffers outside the R/W section, a kick before DRIVER_OK (VIRTIO-Q-2 VIRTIO-Q-3 VIRTIO-Q-4 VIRTIO-NOTIFY-2)")
    func queues() throws { try run(console, "spec", VirtioChecks.queueViolations) }

    @Test("configuration changes: generation, config_event on vector 0, driver config writes (VIRTIO-CFG-1 VIRTIO-CFG-2 VIRTIO-NOTIFY-3)")
    func config() throws { try run(console, "spec", VirtioChecks.configChanges) }

    @Test("a peer leaving the ready state: the back-end starts over, the front-end fails (VIRTIO-STATE-3)")
    func peerLeaves() throws { try run(console, "spec", VirtioChecks.peerLeaves) }

    @Test("links that are not virtio links are refused: 3 peers, a non-virtio protocol, a small R/W section, the wrong device (VIRTIO-LINK-1 VIRTIO-LINK-2 VIRTIO-LINK-3)")
    func links() throws { try VirtioChecks.linkRequirements(profile: "spec") }

    @Test("split ring layouts: sizes, alignment, bounds and the header are checked (VIRTIO-Q-2 VIRTIO-Q-3)")
    func layouts() throws {
        let memory = UnsafeMutableRawPointer.allocate(byteCount: 65536, alignment: 4096)
        defer { memory.deallocate() }
        let rw = RWSection(base: memory, size: 65536)
        #expect(SplitRingLayout(size: 8, desc: 4096, avail: 8192, used: 12288).problem(in: rw, headerSize: 88) == nil)
        #expect(SplitRingLayout(size: 6, desc: 4096, avail: 8192, used: 12288).problem(in: rw, headerSize: 88)?.requirement == "VIRTIO-Q-2")
        #expect(SplitRingLayout(size: 8, desc: 4100, avail: 8192, used: 12288).problem(in: rw, headerSize: 88)?.requirement == "VIRTIO-Q-3")
        #expect(SplitRingLayout(size: 8, desc: 0, avail: 8192, used: 12288).problem(in: rw, headerSize: 88)?.requirement == "VIRTIO-Q-3")
        #expect(SplitRingLayout(size: 8, desc: 4096, avail: 8192, used: 65530).problem(in: rw, headerSize: 88)?.requirement == "VIRTIO-Q-3")
        #expect(VirtioDeviceID.of(protocol: 0xC003) == 3 && VirtioDeviceID.of(protocol: 0x8002) == 2)
    }
}

/// The `ivshmem2 virtio console` tool: two processes, lines both ways through their pipes.
@Suite(.serialized) struct VirtioToolTests {
    /// The ivshmem2 executable next to the test bundle.
    func tool() throws -> String {
        let dir = try SpawnedProcess.currentExecutablePath().split(separator: "/", omittingEmptySubsequences: false).dropLast()
        return (dir.last?.hasSuffix(".xctest") == true ? dir.dropLast() : dir).joined(separator: "/") + "/ivshmem2"
    }

    @Test("ivshmem2 virtio console --backend and --frontend carry lines both ways between two processes (VIRTIO-CON-1 VIRTIO-STATE-1 VIRTIO-STATE-2)")
    func consoleProcesses() throws {
        let s = try VirtioServer(deviceID: VirtioDeviceID.console)
        let back = try LineProcess(name: "back-end", executable: try tool(), arguments: ["virtio", "console", "--backend", "-S", s.path])
        defer { _ = try? back.finish(signal: SIGKILL) }
        // The back-end must be peer 0: start the front-end once the back-end announced itself.
        var announced = ""
        let ready = Monotonic.poll(timeout: 20) {
            announced += back.drainStandardError()
            return announced.contains("virtio: back-end for device 3")
        }
        #expect(ready, "back-end said: \(announced)")
        let front = try LineProcess(name: "front-end", executable: try tool(), arguments: ["virtio", "console", "--frontend", "-S", s.path])
        defer { _ = try? front.finish(signal: SIGKILL) }
        try front.send("hello from the front-end")
        #expect(try back.expect("hello from the front-end") == "hello from the front-end")
        try back.send("hello from the back-end")
        #expect(try front.expect("hello from the back-end") == "hello from the back-end")
        #expect(try front.finish(signal: SIGTERM) == .exited(0))
        #expect(try back.finish(signal: SIGTERM) == .exited(0))
    }
}
