import ArgumentParser
import IvshmemModel
import IvshmemPlatform
import IvshmemPosix
import IvshmemTransport
import IvshmemSync

/// The scenarios `ivshmem2 simulate` runs.
enum Scenario: String, CaseIterable, ExpressibleByArgument, Sendable {
    /// A token travels around the ring: each peer rings the next when it gets it.
    case ring
    /// Every peer rings random other peers as fast as it can.
    case storm
    /// Every peer changes its state repeatedly; the others follow the state table.
    case state
    /// Half the peers storm among themselves while the other half leave and rejoin.
    case churn
}

/// One simulated peer: a separate process attached to the server, programmed like a driver,
/// talking to the coordinator over stdin/stdout: it says `ready <id>`, then on `sync` waits
/// until every peer is introduced (`synced`), on `go` runs the scenario (`sent-all <id>`; a
/// churner says `cycle N` after each rejoin), on
/// `final` reports (`done {json}`), and on `exit` (or end of input) detaches.
///
/// A failure ends the process with exit status 1 and one `error: …` line on stderr, written
/// with a single write() so that it reaches the coordinator whole.
///
/// Lost wake-ups are detected at the protocol level, the way the spec asks users to derive
/// event state from shared memory: before ringing peer t, sender s bumps a counter and stores a
/// timestamp in slot t of its own output section; on every interrupt a receiver reconciles
/// every sender's slot for it. A message whose counter moved but whose interrupt never came is
/// lost; several messages seen on one interrupt were coalesced.
struct SimulationWorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "simulate-worker", abstract: "One peer of a simulation (started by `simulate`).", shouldDisplay: false)

    @Option var socket: String
    @Option var scenario: Scenario
    @Option var peers: Int
    @Option var rounds: Int
    @Option var seed: UInt64 = 1
    /// The coordinator's number for this peer process (0…peers-1); makes churn states unique.
    @Option var number: Int = 0
    /// How far to lower this process's priority (see `SimulateCommand.workerNiceness`).
    @Option var nice: Int32 = 0
    /// Fail on purpose right after `go` (`simulate --debug-fail-peer`: tests the failure report).
    @Flag var failAfterGo = false

    /// How long a peer waits for the others' introductions, or for the server to process its
    /// departure: far above what 1024 peers need on a loaded 2-CPU machine; a bound, not a pace.
    static let patience: Double = 120

    func run() throws {
        do {
            try Signals.ignoreBrokenPipe()
            try Scheduling.yieldPriority(by: nice)
            var input = LineReader(fd: .standardInput)
            if scenario == .churn && SimWorker.environment("IVSHMEM2_SIM_ROLE") == "churn" {
                try runChurner(&input)
            } else {
                try runPeer(&input)
            }
        } catch {
            writeStderrLine("error: \(error)")
            throw ExitCode.failure
        }
    }

    func runPeer(_ input: inout LineReader) throws {
        let w = try SimWorker(socket: socket, scenario: scenario, peers: peers, rounds: rounds, seed: seed)
        writeStdout("ready \(w.id)\n")
        guard try input.next() == "sync" else { return }
        try w.watch.waitForIntroductions(of: peers, timeout: Self.patience)
        writeStdout("synced \(w.id)\n")
        guard try input.next() == "go" else { return }
        if failAfterGo { throw SimulationFailure("failing on purpose after 'go' (simulate --debug-fail-peer \(number))") }
        try w.start()
        writeStdout("sent-all \(w.id)\n")
        guard try input.next() == "final" else { return }
        if scenario == .churn {
            // Every churner's every departure reaches us as PEER_GONE; wait for them all.
            let expected = peers / 2 * rounds
            _ = try w.watch.wait(timeout: Self.patience) { w.watch.departures >= expected }
        }
        writeStdout("done " + (try w.finish()) + "\n")
        _ = try input.next()  // "exit": detach only when every peer has reported
        w.link.close()
    }

    /// Leaves and rejoins `rounds` times while the others run; reports how often.
    ///
    /// Before leaving it writes a State value no other peer uses, and after leaving it waits
    /// until the server has zeroed that entry (SRV-GONE-2), which the server does just before
    /// freeing the ID (SRV-GONE-4). Only then does it reconnect: a server sized for exactly
    /// `peers` IDs that has not yet seen the hang-up would otherwise refuse the newcomer
    /// (SRV-ID-2), which is what made churn with 16 or more peers fail.
    func runChurner(_ input: inout LineReader) throws {
        var link = try SimulationWorkerCommand.attach(socket)
        writeStdout("ready \(link.device.id)\n")
        guard try input.next() == "sync" else { return }
        try LinkWatch(link).waitForIntroductions(of: peers, timeout: Self.patience)
        writeStdout("synced \(link.device.id)\n")
        guard try input.next() == "go" else { return }
        if failAfterGo { throw SimulationFailure("failing on purpose after 'go' (simulate --debug-fail-peer \(number))") }
        var cycles = 0
        var slowest = 0.0
        for cycle in 0..<rounds {
            let device = link.device
            let marker = UInt32(number + 1) << 16 | UInt32(cycle % 0xFFFF + 1)
            device.writeRegister(device.registerOffsets.state, marker)
            let left = Monotonic.now()
            link.close()
            try Self.waitUntilDeparted(device, marker: marker, timeout: Self.patience)
            link = try SimulationWorkerCommand.attach(socket)
            slowest = max(slowest, Monotonic.now() - left)
            cycles += 1
            writeStdout("cycle \(cycles)\n")  // progress, for the coordinator's stall check
        }
        writeStdout("sent-all \(link.device.id)\n")
        guard try input.next() == "final" else { return }
        writeStdout("done {\"id\":\(link.device.id),\"role\":\"churn\",\"cycles\":\(cycles),\"slowestRejoinMilliseconds\":\(Int(slowest * 1000))}\n")
        _ = try input.next()
        link.close()
    }

    /// Attaches to the simulation's server. The server is our own and the coordinator watches
    /// for progress, so the attach timeout (meant to unmask a server that never speaks) is
    /// `patience`: an introduction carries `vectors` eventfds per peer, and when 128 churners
    /// rejoin 256 peers at once the server and the newcomers pass ~130,000 descriptors, more
    /// than 2 CPUs move in the default 10 s.
    static func attach(_ socket: String) throws -> AttachedDevice {
        try AttachedDevice.attach(socketPath: socket, options: AttachOptions(timeout: patience))
    }

    /// Waits until the server has processed this device's departure: its State Table entry no
    /// longer holds `marker` (zeroed by the server, and perhaps already reused by a newcomer).
    /// Shared memory raises no event for this, so it is polled, backing off to 5 ms.
    static func waitUntilDeparted(_ device: IvshmemDevice, marker: UInt32, timeout: Double) throws {
        guard Monotonic.poll(timeout: timeout, interval: 0.0001, backingOffTo: 0.005, { device.stateTableEntry(device.id) != marker }) else {
            throw SimulationFailure("the server did not process the departure of peer \(device.id) within \(Int(timeout)) s (its State Table entry was not zeroed)")
        }
    }
}

/// Why a simulation peer gave up.
struct SimulationFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Follows a link's events: counts joins and departures (the link itself keeps only the
/// newest events), and lets a caller wait for a condition without polling: the link's event
/// handler signals an eventfd, and the waiter re-checks its condition each time it fires.
final class LinkWatch {
    /// What the handler shares with the watch; the eventfd closes when both let go, so a
    /// handler call already under way never signals a closed (perhaps reused) descriptor.
    private final class Shared: Sendable {
        let wake: EventFD
        let counts = Locked((joins: 0, departures: 0))
        init() throws { wake = try EventFD.create(nonBlocking: true) }
        deinit { wake.close() }
    }
    private let link: AttachedDevice
    private let shared: Shared

    init(_ link: AttachedDevice) throws {
        self.link = link
        let shared = try Shared()
        self.shared = shared
        let initialJoins = link.linkEvents.filter { if case .eventFD(_, 0) = $0 { return true }; return false }.count
        shared.counts.withLock { $0.joins = initialJoins }
        link.onLinkEvent { event in
            shared.counts.withLock { c in
                switch event {
                case .eventFD(_, 0): c.joins += 1
                case .peerLeft: c.departures += 1
                default: break
                }
            }
            try? shared.wake.signal()
        }
    }

    deinit { link.onLinkEvent(nil) }

    /// EVENT_FD messages for vector 0 (peers introduced) and PEER_GONE messages so far.
    var joins: Int { shared.counts.withLock { $0.joins } }
    var departures: Int { shared.counts.withLock { $0.departures } }

    /// Waits until `condition` holds; false when `timeout` seconds passed first.
    func wait(timeout: Double, until condition: () -> Bool) throws -> Bool {
        let deadline = Monotonic.now() + timeout
        while !condition() {
            let left = deadline - Monotonic.now()
            guard left > 0 else { return false }
            if try shared.wake.wait(timeoutMilliseconds: Int32(min(left, 1) * 1000) + 1) { _ = try shared.wake.consume() }
        }
        return true
    }

    /// Waits until `count` peers (this one included) are fully introduced.
    func waitForIntroductions(of count: Int, timeout: Double) throws {
        guard try wait(timeout: timeout, until: { link.introducedPeers.count >= count }) else {
            throw SimulationFailure("only \(link.introducedPeers.count) of \(count) peers were introduced to peer \(link.device.id) within \(Int(timeout)) s")
        }
    }
}

/// The peer's device, its counters and its scenario logic.
final class SimWorker: @unchecked Sendable {
    let link: AttachedDevice
    let watch: LinkWatch
    let platform = PCIPlatform()
    let scenario: Scenario
    let peers: Int
    let rounds: Int
    var id: UInt32 { link.device.id }
    var device: IvshmemDevice { link.device }
    let doorbellVector: Int

    private struct Counters {
        var lastSeen: [UInt64]
        var observed: UInt64 = 0
        var unexpected = 0
        var interrupts = 0
        var samples: [UInt64] = []
        var sampleCount: UInt64 = 0
        var stateSeen: [UInt32]
        var stateTransitions = 0
        var ringsForwarded = 0
        var tokensAtZero = 0
        var rng: UInt64
        var sent: UInt64 = 0
    }
    private let counters: Locked<Counters>
    private let tokenDone = Locked(false)

    static func environment(_ name: String) -> String? {
        guard let v = getenv(name) else { return nil }
        return String(cString: v)
    }

    init(socket: String, scenario: Scenario, peers: Int, rounds: Int, seed: UInt64) throws {
        link = try SimulationWorkerCommand.attach(socket)
        watch = try LinkWatch(link)
        self.scenario = scenario
        self.peers = peers
        self.rounds = rounds
        let n = Int(link.device.configuration.maxPeers)
        doorbellVector = link.device.configuration.vectors > 1 ? 1 : 0
        counters = Locked(Counters(lastSeen: Array(repeating: 0, count: n), stateSeen: Array(repeating: 0, count: n), rng: seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(link.device.id) &+ 1))
        try DriverSetup.plugAndEnable(link.device, into: platform, at: try BDF(device: 4))
        platform.interrupts.addHandler { [self] r in
            if case .msix(let v, _, _) = r.kind { self.onInterrupt(vector: v) }
        }
    }

    /// Slot of sender `s` for target `t`: {u64 count, u64 timestamp} in s's output section.
    func slot(sender s: UInt32, target t: UInt32) -> UInt64 {
        device.layout.geometry.outputSectionOffset(peer: UInt64(s)) + UInt64(t) * 16
    }

    static func nowNanoseconds() -> UInt64 { UInt64(Monotonic.now() * 1e9) }

    /// Publishes one message to `t` in shared memory, then rings it.
    func send(to t: UInt32) {
        counters.withLock { $0.sent += 1 }
        let s = slot(sender: id, target: t)
        let count = device.sharedMemoryLoad(offset: s, size: 8) &+ 1
        device.sharedMemoryStore(offset: s + 8, size: 8, value: Self.nowNanoseconds())
        device.sharedMemoryStore(offset: s, size: 8, value: count)
        device.writeRegister(device.registerOffsets.doorbell, BAR0Registers.doorbellValue(peer: t, vector: UInt32(doorbellVector)))
    }

    /// Reconciles what the interrupt stands for (IRQ: "derive event state from shared memory"):
    /// on the doorbell vector every sender's slot for us, on vector 0 the State Table. With
    /// two or more vectors a message is only ever signalled on the doorbell vector, so a
    /// vector-0 interrupt (a state change, a departure) must not count it as observed: that
    /// would hide a lost doorbell, and with hundreds of peers coming and going it would cost
    /// a full scan of every slot per departure.
    func onInterrupt(vector: Int) {
        let now = Self.nowNanoseconds()
        let messages = vector == doorbellVector
        let states = vector == 0
        var forward = false
        counters.withLock { c in
            c.interrupts += 1
            if !messages && !states { c.unexpected += 1 }
            for s in 0..<UInt32(c.lastSeen.count) where s != id {
                if messages {
                    let base = slot(sender: s, target: id)
                    let count = device.sharedMemoryLoad(offset: base, size: 8)
                    if count < c.lastSeen[Int(s)] { c.unexpected += 1 }  // a counter never goes back
                    if count > c.lastSeen[Int(s)] {
                        c.observed += count - c.lastSeen[Int(s)]
                        c.lastSeen[Int(s)] = count
                        let ts = device.sharedMemoryLoad(offset: base + 8, size: 8)
                        if ts > 0 && now >= ts { record(&c, now - ts) }
                        forward = true
                    }
                }
                if states {
                    let st = device.stateTableEntry(s)
                    if st != c.stateSeen[Int(s)] {
                        c.stateSeen[Int(s)] = st
                        c.stateTransitions += 1
                    }
                }
            }
        }
        if scenario == .ring && forward { forwardToken() }
    }

    private func record(_ c: inout Counters, _ v: UInt64) {
        c.sampleCount += 1
        if c.samples.count < 4096 { c.samples.append(v); return }
        c.rng = c.rng &* 6364136223846793005 &+ 1442695040888963407
        let j = Int((c.rng >> 33) % c.sampleCount)
        if j < c.samples.count { c.samples[j] = v }  // reservoir sample
    }

    private func nextRandom() -> UInt64 {
        counters.withLock { c in
            c.rng = c.rng &* 6364136223846793005 &+ 1442695040888963407
            return c.rng >> 33
        }
    }

    private func forwardToken() {
        let next = (id + 1) % UInt32(peers)
        if id == 0 {
            let done = counters.withLock { c -> Bool in
                c.tokensAtZero += 1
                return c.tokensAtZero >= rounds
            }
            if done { tokenDone.withLock { $0 = true }; return }
        }
        counters.withLock { $0.ringsForwarded += 1 }
        send(to: next)
    }

    /// Runs this peer's part of the scenario.
    func start() throws {
        switch scenario {
        case .ring:
            if id == 0 { send(to: 1 % UInt32(peers)) }
            if id == 0 {
                _ = Monotonic.poll(timeout: 120) { tokenDone.withLock { $0 } }
            }
        case .storm, .churn:
            let stable = scenario == .churn ? max(2, peers / 2) : peers
            for _ in 0..<rounds {
                var t = UInt32(nextRandom() % UInt64(stable))
                if t == id { t = (t + 1) % UInt32(stable) }
                send(to: t)
            }
        case .state:
            for k in 1...max(rounds, 1) {
                device.writeRegister(device.registerOffsets.state, id << 16 | UInt32(k))
                Monotonic.sleep(seconds: 0.0005)
            }
        }
    }

    /// How many messages sent to us were never observed. Called after every peer finished
    /// sending, so every doorbell meant for us is already in our eventfd: once the event loop
    /// has handled everything readable (`settle`, a barrier through the loop), a message
    /// whose counter moved but that was never observed lost its interrupt.
    func unobservedMessages() throws -> UInt64 {
        guard link.settle(timeout: SimulationWorkerCommand.patience) else {
            throw SimulationFailure("peer \(id)'s event loop did not catch up within \(Int(SimulationWorkerCommand.patience)) s (or its link closed)")
        }
        var total: UInt64 = 0
        for s in 0..<UInt32(counters.withLock { $0.lastSeen.count }) where s != id {
            total += device.sharedMemoryLoad(offset: slot(sender: s, target: id), size: 8)
        }
        let observed = counters.withLock { $0.observed }
        return total > observed ? total - observed : 0
    }

    /// Reports this peer's counters as one JSON object.
    func finish() throws -> String {
        let lost = try unobservedMessages()
        var finalStates = 0
        if scenario == .state {
            for s in 0..<UInt32(peers) where s != id && device.stateTableEntry(s) == s << 16 | UInt32(max(rounds, 1)) { finalStates += 1 }
        }
        let stats = device.statistics
        return counters.withLock { c in
            "{\"id\":\(id),\"role\":\"peer\",\"sent\":\(c.sent),\"interrupts\":\(c.interrupts),\"delivered\":\(stats.delivered),\"observed\":\(c.observed),\"lost\":\(lost),\"unexpected\":\(c.unexpected),\"stateTransitions\":\(c.stateTransitions),\"finalStatesSeen\":\(finalStates),\"joins\":\(watch.joins),\"leaves\":\(watch.departures),\"latencyCount\":\(c.sampleCount),\"samples\":[\(c.samples.map(String.init).joined(separator: ","))]}"
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
