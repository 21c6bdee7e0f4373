#if canImport(Glibc)
import Glibc
#endif
import IvshmemPosix
import Testing

/// `ivshmem2 peer --v1` processes on `ivshmem2 server-v1 -F -S SOCK -l 1M -n 2`.
@Suite(.serialized) struct V1PeerProcessTests {
    /// Runs `action` until `process` prints a line starting with `prefix` (at most 10 s).
    static func repeatUntil(_ process: LineProcess, _ prefix: String, _ action: () throws -> Void) throws -> Bool {
        let deadline = Monotonic.now() + 10
        while Monotonic.now() < deadline {
            try action()
            if (try? process.expect(prefix, timeout: 0.2)) != nil { return true }
        }
        return false
    }

    @Test("V1-REG-DB-1, V1-IRQ-MSIX-1, V1-SHM-BAR-1, V1-REG-POS-1: two `ivshmem2 peer --v1` processes on `ivshmem2 server-v1` ring each other and share memory; a departure reaches the other")
    func twoV1Peers() throws {
        let dir = try FileSystem.makeTemporaryDirectory(template: "/tmp/ivshmem2-v1peers.XXXXXX")
        defer { FileSystem.removeDirectoryTree(dir) }
        let sock = dir + "/s.sock"
        let server = try Child("server-v1", ["server-v1", "-F", "-S", sock, "-l", "1M", "-n", "2", "--memfd"])
        defer { _ = try? server.stop(signal: SIGTERM) }
        #expect(Monotonic.poll(timeout: 10) { (try? UnixSocket.probe(path: sock)) == .live })
        // The probe above was a peer too: IDs go in turn (V1-SRV-ID-1), so read them.
        func id(_ ready: String) -> String { ready.split(separator: " ")[2].description }
        let a = try Child("A", ["peer", "--v1", "--vectors", "2", "--quiet", "-S", sock])
        let aID = id(try a.expect("ready: id "))
        let b = try Child("B", ["peer", "--v1", "--vectors", "2", "--quiet", "-S", sock])
        let bReady = try b.expect("ready: id ")
        #expect(bReady.hasSuffix("v1 vectors 2 shm 1048576"), "\(bReady)")
        let bID = id(bReady)
        _ = try b.expect("peer: \(aID)")
        try b.send("int \(aID) 1")
        _ = try a.expect("irq: vector 1")
        try a.send("shm-write 0x40 hello-v1")
        _ = try a.expect("ok: wrote 8 bytes")
        try b.send("shm-read 0x40 8")
        _ = try b.expect("shm: 0x40 \"hello-v1\"")
        // A may not have B's eventfds yet when B's line arrives; ring until B hears it.
        #expect(try Self.repeatUntil(b, "irq: vector 0") { try a.send("int \(bID) 0") })
        try b.send("dump")
        _ = try b.expect("id: \(bID) vectors: 2")
        try b.send("quit")
        #expect(try b.stop().isSuccess)
        // A learns of the departure asynchronously: ring until the doorbell finds no eventfd.
        #expect(try Self.repeatUntil(a, "finding: [V1-REG-DB-2") { try a.send("int \(bID) 0") })
        try a.send("quit")
        #expect(try a.stop().isSuccess)
        #expect(try server.stop(signal: SIGTERM).isSuccess)
    }
}
