#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Foundation
import Histogram
import IvshmemPosix
import IvshmemServer
import Logging

/// `ivshmem2 simulate`: N peers as separate processes attached to our server, running a
/// scenario, with a per-peer report and latency percentiles.
struct SimulateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Run N peer processes through a scenario and report interrupts, losses and latency.",
        discussion: """
            Scenarios: ring (a token travels round the ring 'rounds' times), storm (each
            peer rings 'rounds' random peers as fast as it can), state (each peer
            changes its state 'rounds' times), churn (half the peers storm, the other
            half leave and rejoin 'rounds' times). Every message is also counted in
            shared memory, so a lost wake-up is detected; several messages handled by
            one interrupt count as coalesced.

            Each peer is a process of its own. What a peer writes on stderr is passed
            on one line at a time as 'peer N: …' (N: the order it was started in,
            which is also the first ID it got). Peer processes lower their priority
            as their number grows, so that they cannot starve the server.

            Exit status:
              0  the scenario ran and every event arrived
              1  the scenario ran, but events were lost or unexpected
              3  the simulation could not run: a peer process failed or stopped
                 making progress (the report names each one and why), or the
                 server or the processes could not be started
              64 invalid options
            """)

    @Option(help: "Number of peer processes (2…1024).") var peers: Int = 4
    @Option(help: "Interrupt vectors per peer.") var vectors: Int = 2
    @Option(help: "ring, storm, state or churn.") var scenario: Scenario = .storm
    @Option(help: "Rounds per peer (tokens, messages or state changes).") var rounds: Int = 200
    @Option(help: "Seed for the random targets.") var seed: UInt64 = 1
    @Flag(help: "Print the per-peer table.") var perPeer = false

    @Option(help: ArgumentHelp("Make peer N fail right after 'go' (tests the failure report).", visibility: .hidden))
    var debugFailPeer: [Int] = []

    /// Exit statuses (also in the help text and the README).
    static let exitEventsLost: Int32 = 1
    static let exitCouldNotRun: Int32 = 3

    /// The nice value the peer processes take, so that together they weigh at most about
    /// eight times the server thread with the scheduler (a nice step is a factor of 1.25).
    /// Hundreds of busy peers on 2 CPUs otherwise leave the server a few milliseconds per
    /// second: with 256 peers in churn, newcomers then waited more than the 10 s a device
    /// gives the server for INIT. Doorbells go from peer to peer, so this does not bias the
    /// latencies measured.
    static func workerNiceness(peers: Int) -> Int32 {
        guard peers > 8 else { return 0 }
        return Int32(min(19, (log(Double(peers) / 8) / log(1.25)).rounded(.up)))
    }

    /// How long the coordinator waits when no peer process writes anything: with 256 peers in
    /// churn on a loaded 2-CPU machine (debug build), 2560 rejoins took 525 s: five lines a second.
    static let stallTimeout: Double = 180

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        guard (2...1024).contains(peers) else { throw ValidationError("--peers must be between 2 and 1024, got \(peers)") }
        guard (1...64).contains(vectors) else { throw ValidationError("--vectors must be between 1 and 64, got \(vectors)") }
        guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1") }
        if let bad = debugFailPeer.first(where: { !(0..<peers).contains($0) }) { throw ValidationError("--debug-fail-peer \(bad) is not a peer (0…\(peers - 1))") }
    }

    func run() throws {
        logging.apply()
        do {
            try simulate()
        } catch let code as ExitCode {
            throw code
        } catch {
            // Anything else kept the simulation from running (or from finishing): say why, and
            // exit with a status that cannot be mistaken for lost events.
            writeStdout("error: \(error)\nRESULT: ERROR (the simulation could not run)\n")
            throw ExitCode(Self.exitCouldNotRun)
        }
    }

    private func simulate() throws {
        try Signals.ignoreBrokenPipe()
        // The server holds a socket and `vectors` eventfds per peer, each peer process holds
        // `vectors` eventfds per peer, and this process two pipes per peer.
        let limit = try ResourceLimits.raiseOpenFilesToMaximum()
        let needed = UInt64(peers * (vectors + 4) + 64)
        if limit < needed {
            throw SimulationFailure("\(peers) peers need about \(needed) open files in one process, but RLIMIT_NOFILE's hard limit is \(limit); raise it (ulimit -Hn) or use fewer peers")
        }
        var config = ServerConfiguration()
        config.maxPeers = UInt64(max(peers, 2))
        config.vectors = UInt64(vectors)
        config.outputSectionSize = UInt64(max(4096, (peers * 16 + 4095) / 4096 * 4096))
        config.size = 4096 * UInt64((peers * 4 + 4095) / 4096 + 1) + config.maxPeers * config.outputSectionSize + 4096
        config.size = (config.size + 4095) / 4096 * 4096
        let server = try PrivateServer(configuration: config, prefix: "ivshmem2-sim", label: "ivshmem2.simulate.server")
        defer { server.stop() }

        let pool = try SimulationWorkers()
        defer { pool.stopAll(grace: 10) }
        do {
            try runPhases(pool, socket: server.socketPath)
        } catch is SimulationWorkers.Aborted {
            pool.stopAll(grace: 10)
            let failed = pool.failed
            var out = "scenario \(scenario.rawValue): \(peers) peers, \(vectors) vector(s), \(rounds) rounds\n"
            for w in failed {
                let why = w.failure!
                out += "failed: \(w.label) (\(w.role)): \(why.count > 400 ? why.prefix(400) + " …" : why)\n"
            }
            let refused = server.server.counters.refused
            if refused > 0 { out += "server: refused \(refused) connection(s) (all peer IDs taken, or out of descriptors)\n" }
            out += "RESULT: ERROR (the simulation could not run: \(failed.count) of \(peers) peer processes failed)\n"
            writeStdout(out)
            throw ExitCode(Self.exitCouldNotRun)
        }
    }

    private func runPhases(_ pool: SimulationWorkers, socket: String) throws {
        let start = Monotonic.now()
        progress("starting \(peers) peer processes (scenario \(scenario.rawValue), \(vectors) vector(s), \(rounds) rounds)")
        let churners = scenario == .churn ? peers / 2 : 0
        var workers: [SimulationWorkers.Worker] = []
        for i in 0..<peers {
            var arguments = ["--socket", socket, "--scenario", scenario.rawValue, "--peers", String(peers),
                             "--rounds", String(rounds), "--seed", String(seed), "--number", String(i),
                             "--nice", String(Self.workerNiceness(peers: peers))]
            if debugFailPeer.contains(i) { arguments.append("--fail-after-go") }
            let w = try pool.start(arguments: arguments, role: i >= peers - churners ? "churn" : "peer")
            workers.append(w)
            // One at a time, so that peer i gets ID i (the storm's targets are the first IDs).
            _ = try pool.collect("ready", from: [w], stallTimeout: Self.stallTimeout)
            if (i + 1) % 64 == 0 { progress("\(i + 1)/\(peers) peers attached") }
        }
        // Everyone must know everyone before the scenario starts.
        pool.send("sync", to: workers)
        _ = try pool.collect("synced", from: workers, stallTimeout: Self.stallTimeout)
        let attached = Monotonic.now() - start
        progress("all \(peers) peers attached and introduced in \(String(format: "%.2f", attached)) s; go")

        let runStart = Monotonic.now()
        pool.send("go", to: workers)
        _ = try pool.collect("sent-all", from: workers, stallTimeout: Self.stallTimeout)
        pool.send("final", to: workers)
        var reports: [[String: Any]] = []
        for line in try pool.collect("done ", from: workers, stallTimeout: Self.stallTimeout) {
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line.dropFirst(5).utf8)) as? [String: Any] else {
                throw SimulationFailure("a peer process sent an unreadable report: \(line.prefix(200))")
            }
            reports.append(obj)
        }
        let elapsed = Monotonic.now() - runStart
        pool.send("exit", to: workers)
        pool.stopAll(grace: 30)
        if !pool.failed.isEmpty { throw SimulationWorkers.Aborted() }
        try printReport(reports, elapsed: elapsed, attachSeconds: attached)
    }

    func progress(_ s: String) { writeStderr("simulate: \(s)\n") }

    func printReport(_ reports: [[String: Any]], elapsed: Double, attachSeconds: Double) throws {
        func int(_ r: [String: Any], _ k: String) -> Int { (r[k] as? Int) ?? Int((r[k] as? Double) ?? 0) }
        let peersOnly = reports.filter { $0["role"] as? String == "peer" }
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
        for r in peersOnly { for s in (r["samples"] as? [Any]) ?? [] { _ = histogram.record(UInt64((s as? Int) ?? 0)) } }
        let sent = peersOnly.reduce(0) { $0 + int($1, "sent") }
        let observed = peersOnly.reduce(0) { $0 + int($1, "observed") }
        let delivered = peersOnly.reduce(0) { $0 + int($1, "delivered") }
        let lost = peersOnly.reduce(0) { $0 + int($1, "lost") }
        let unexpected = peersOnly.reduce(0) { $0 + int($1, "unexpected") }
        var out = "scenario \(scenario.rawValue): \(reports.count) peers, \(vectors) vector(s), \(rounds) rounds, attach \(String(format: "%.2f", attachSeconds)) s, run \(String(format: "%.3f", elapsed)) s\n"
        if perPeer {
            out += "  peer      sent  interrupts  observed  coalesced  lost  unexpected  state-transitions  joins  leaves\n"
            for r in reports.sorted(by: { int($0, "id") < int($1, "id") }) {
                if r["role"] as? String == "churn" {
                    out += "  \(pad(int(r, "id"), 4))  churn: left and rejoined \(int(r, "cycles")) times\n"
                    continue
                }
                let coalesced = max(0, int(r, "observed") - int(r, "delivered"))
                out += "  \(pad(int(r, "id"), 4))  \(pad(int(r, "sent"), 8))  \(pad(int(r, "interrupts"), 10))  \(pad(int(r, "observed"), 8))  \(pad(coalesced, 9))  \(pad(int(r, "lost"), 4))  \(pad(int(r, "unexpected"), 10))  \(pad(int(r, "stateTransitions"), 17))  \(pad(int(r, "joins"), 5))  \(pad(int(r, "leaves"), 6))\n"
            }
        }
        out += "messages: sent \(sent), observed \(observed), interrupts delivered \(delivered), coalesced \(max(0, observed - delivered)), lost \(lost), unexpected \(unexpected)\n"
        if scenario == .state {
            out += "state transitions seen: \(peersOnly.reduce(0) { $0 + int($1, "stateTransitions") }); final states seen \(peersOnly.reduce(0) { $0 + int($1, "finalStatesSeen") }) of \(peersOnly.count * (peersOnly.count - 1))\n"
        }
        var missedDepartures = false
        if scenario == .churn {
            let churners = reports.filter { $0["role"] as? String == "churn" }
            let slowest = churners.map { int($0, "slowestRejoinMilliseconds") }.max() ?? 0
            let cycles = churners.reduce(0) { $0 + int($1, "cycles") }
            let departures = peersOnly.reduce(0) { $0 + int($1, "leaves") }
            out += "churn: \(cycles) leave/rejoin cycles (slowest \(slowest) ms); stable peers saw \(departures) of \(cycles * peersOnly.count) departures\n"
            if departures != cycles * peersOnly.count { missedDepartures = true }
        }
        if histogram.totalCount > 0 {
            func us(_ p: Double) -> String { String(format: "%.1f", Double(histogram.valueAtPercentile(p)) / 1000) }
            out += "latency (doorbell to handler, µs, \(histogram.totalCount) samples): p50 \(us(50)) p90 \(us(90)) p99 \(us(99)) p99.9 \(us(99.9)) max \(String(format: "%.1f", Double(histogram.max) / 1000))\n"
        }
        var bad = lost > 0 || unexpected > 0
        if missedDepartures { bad = true; out += "error: some PEER_GONE messages never reached a stable peer\n" }
        if scenario == .state {
            let expected = peersOnly.count * (peersOnly.count - 1)
            let seen = peersOnly.reduce(0) { $0 + int($1, "finalStatesSeen") }
            if seen != expected { bad = true; out += "error: \(expected - seen) final state values were not seen\n" }
        }
        out += bad ? "RESULT: FAIL (events lost or unexpected)\n" : "RESULT: OK (no lost or unexpected events)\n"
        writeStdout(out)
        if bad { throw ExitCode(Self.exitEventsLost) }
    }

    func pad(_ v: Int, _ w: Int) -> String {
        let s = String(v)
        return String(repeating: " ", count: max(0, w - s.count)) + s
    }
}
