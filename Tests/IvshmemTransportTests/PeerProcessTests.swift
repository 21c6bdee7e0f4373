#if canImport(Glibc)
import Glibc
#endif
import Foundation
import IvshmemPosix
import IvshmemTestSupport
import Testing

/// `ivshmem2 ARGS` as a child followed line by line.
func Child(_ name: String, _ args: [String]) throws -> LineProcess {
    try LineProcess(name: name, executable: try BuiltProducts.ivshmem2(), arguments: args)
}

extension LineProcess {
    func stop(signal: Int32? = nil) throws -> IvshmemPosix.ExitStatus { try finish(signal: signal) }
}

/// `ivshmem2 server` (4 peers, 2 vectors) as a child process on a fresh socket, for `body`.
func withServerProcess(_ body: (_ socket: String, _ server: LineProcess) throws -> Void) throws {
    let dir = try FileSystem.makeTemporaryDirectory(template: "/tmp/ivshmem2-peers.XXXXXX")
    defer { FileSystem.removeDirectoryTree(dir) }
    let sock = dir + "/s.sock"
    let server = try Child("server", ["server", "-F", "-S", sock, "-l", "1M", "-n", "4", "-V", "2", "-o", "64K"])
    defer { _ = try? server.stop(signal: SIGTERM) }
    #expect(Monotonic.poll(timeout: 10) { (try? UnixSocket.probe(path: sock)) == .live })
    try body(sock, server)
}

@Suite(.serialized) struct PeerProcessTests {
    @Test("DEV-PEER-1, DEV-PEER-3, SRV-GONE-3: three peer processes join and leave through a server process; IDs are reused")
    func threePeerProcesses() throws {
      try withServerProcess { sock, server in
        let a = try Child("A", ["peer", "--quiet", "-S", sock])
        _ = try a.expect("ready: id 0")
        let b = try Child("B", ["peer", "--quiet", "-S", sock])
        _ = try b.expect("ready: id 1")
        let c = try Child("C", ["peer", "--quiet", "-S", sock])
        _ = try c.expect("ready: id 2")
        _ = try a.expect("joined: peer 2")
        _ = try b.expect("joined: peer 2")

        try c.send("state 0xc3")
        _ = try a.expect("irq: vector 0")
        _ = try b.expect("irq: vector 0")
        try a.send("int 2 1")
        _ = try c.expect("irq: vector 1")

        try b.send("quit")
        #expect(try b.stop().isSuccess)
        _ = try a.expect("left: peer 1")
        _ = try c.expect("left: peer 1")

        let d = try Child("D", ["peer", "--quiet", "-S", sock])
        _ = try d.expect("ready: id 1")  // lowest free ID, reused
        _ = try a.expect("joined: peer 1")
        _ = try d.expect("joined: peer 2")  // C's eventfds reached D
        try d.send("dump")
        _ = try d.expect("state-table: peer 2 0xc3 active")
        try c.send("quit")
        #expect(try c.stop().isSuccess)
        _ = try d.expect("left: peer 2")
        try d.send("dump")
        _ = try d.expect("state-table: peer 2 0x0 inactive")
        for p in [a, d] { try p.send("quit"); #expect(try p.stop().isSuccess) }
        #expect(try server.stop(signal: SIGTERM).isSuccess)
      }
    }

    @Test("WIRE-CLI-20, IRQ-STATE-1: commands piped into a peer before it prints `ready:` reach the peers connected before it")
    func pipedCommandsReachEarlierPeers() throws {
      try withServerProcess { sock, _ in
        let a = try Child("A", ["peer", "--quiet", "-S", sock])
        _ = try a.expect("ready: id 0")
        // B's commands are in its stdin before it has even connected, as with `printf … | ivshmem2 peer`.
        let b = try Child("B", ["peer", "--quiet", "-S", sock])
        try b.send("state 5\nint 0 1\nwait-peers 1 0\nquit")
        _ = try a.expect("irq: vector 0")  // B's state change
        _ = try a.expect("irq: vector 1")  // B's doorbell
        _ = try b.expect("ready: id 1")
        #expect(try b.expect("joined:") == "joined: peer 0", "joined: right after ready: \(b.lines)")
        _ = try b.expect("peers: 0")
        #expect(!b.lines.contains { $0.hasPrefix("finding:") || $0.hasPrefix("error:") }, "\(b.lines)")
        #expect(try b.stop().isSuccess)
        try a.send("quit")
        #expect(try a.stop().isSuccess)
      }
    }

    @Test("SRV-GONE-1, DEV-PEER-2: `ivshmem2 demo` (the README's run command) completes: state, doorbells both ways, departure")
    func demoRuns() throws {
        let demo = try Child("demo", ["demo"])
        _ = try demo.expect("== demo complete", timeout: 60)
        #expect(try demo.stop().isSuccess)
    }
}

@Suite(.serialized) struct SimulationTests {
    @Test("IRQ-COAL-2, IRQ-STATE-1, DEV-PEER-2: every simulation scenario completes with peer processes and loses nothing", arguments: ["ring", "storm", "state", "churn"])
    func scenario(_ name: String) throws {
        let sim = try Child("simulate", ["simulate", "--peers", "6", "--scenario", name, "--rounds", "40"])
        let result = try sim.expect("RESULT:", timeout: 120)
        #expect(result == "RESULT: OK (no lost or unexpected events)", "\(sim.lines)")
        #expect(sim.lines.contains { $0.hasPrefix("messages:") && $0.contains("lost 0, unexpected 0") })
        #expect(try sim.stop().isSuccess)
    }

    @Test("SRV-ID-2, SRV-GONE-2, SRV-GONE-4, DEV-PEER-1, DEV-PEER-3: churn with 32 peer processes on a server sized for 32 completes; each churner rejoins only after its departure was processed")
    func churnWithManyPeers() throws {
        // Before the fix a churner reconnected before the server had freed its ID, was refused
        // (SRV-ID-2) and died: every run with 16 or more peers failed, this one included.
        let sim = try Child("simulate", ["simulate", "--peers", "32", "--scenario", "churn", "--rounds", "3"])
        let result = try sim.expect("RESULT:", timeout: 600)
        let errors = sim.drainStandardError()
        #expect(result == "RESULT: OK (no lost or unexpected events)", "\(sim.lines)\n\(errors)")
        #expect(sim.lines.contains { $0.hasPrefix("churn: 48 leave/rejoin cycles") && $0.hasSuffix("stable peers saw 768 of 768 departures") }, "\(sim.lines)")
        #expect(try sim.stop() == .exited(0))
    }

    @Test("simulate: failing peer processes are reported one per line as 'peer N: error: …', named in the report, and the run exits with status 3, not 1")
    func failingPeersAreReported() throws {
        // Peer 2 storms, peer 6 churns; both fail at the same moment, right after 'go'.
        let sim = try Child("simulate", ["simulate", "--peers", "8", "--scenario", "churn", "--rounds", "3",
                                         "--debug-fail-peer", "2", "--debug-fail-peer", "6"])
        let result = try sim.expect("RESULT:", timeout: 300)
        #expect(result == "RESULT: ERROR (the simulation could not run: 2 of 8 peer processes failed)", "\(sim.lines)")
        let stderr = sim.drainStandardError().split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        #expect(try sim.stop() == .exited(3))
        // Every line whole: our own progress lines or a child's line behind its prefix.
        func isChildLine(_ line: Substring) -> Bool {
            guard line.hasPrefix("peer "), let colon = line.firstIndex(of: ":") else { return false }
            let number = line[line.index(line.startIndex, offsetBy: 5)..<colon]
            return !number.isEmpty && number.allSatisfy(\.isNumber)
        }
        for line in stderr {
            #expect(line.hasPrefix("simulate: ") || isChildLine(line), "garbled stderr line: \(line)")
        }
        for n in [2, 6] {
            let expected = "peer \(n): error: failing on purpose after 'go' (simulate --debug-fail-peer \(n))"
            #expect(stderr.filter { $0 == expected }.count == 1, "\(stderr)")
            let role = n == 6 ? "churn" : "peer"
            #expect(sim.lines.contains { $0.hasPrefix("failed: peer \(n) (\(role)): exit status 1") && $0.hasSuffix(expected.dropFirst("peer \(n): ".count)) }, "\(sim.lines)")
        }
        #expect(sim.lines.filter { $0.hasPrefix("failed: ") }.count == 2, "\(sim.lines)")
    }
}
