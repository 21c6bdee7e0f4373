import IvshmemModel
import IvshmemPlatform
import IvshmemPosix
import IvshmemServer
import IvshmemSpec
import IvshmemTransport

/// The outcome of one case under one profile.
public struct CaseResult: Sendable {
    public var script: String
    public var caseName: String
    public var profile: String
    public var covers: [String]
    public var skipped: Bool
    /// Why the case did not run (set whenever ``skipped`` is).
    public var skipReason: String?
    public var failure: CaseFailure?
    public var duration: Double
    public var trace: [TraceEvent]
    /// When the case's trace clock started (``Monotonic/now()``): a trace event happened at
    /// `traceStart + event.time`.
    public var traceStart: Double = 0
    public var passed: Bool { failure == nil && !skipped }

    /// Findings recorded during the case, per peer and requirement, in first-seen order.
    public var findingSummary: [(peer: String, requirement: String, count: Int)] {
        var order: [String] = []
        var counts: [String: Int] = [:]
        for e in trace where e.kind == .finding {
            let key = e.peer + " " + (e.requirement ?? "?")
            if counts[key] == nil { order.append(key) }
            counts[key, default: 0] += 1
        }
        return order.map { k in
            let parts = k.split(separator: " ", maxSplits: 1).map(String.init)
            return (parts[0], parts.count > 1 ? parts[1] : "?", counts[k] ?? 0)
        }
    }
}

/// Where and why a case failed.
public struct CaseFailure: Sendable, Error {
    public var line: Int
    public var statement: String
    public var expected: String
    public var actual: String
    public var traceTail: [TraceEvent]

    public func render(path: String) -> String {
        var s = "\(path):\(line): \(statement)\n    expected: \(expected)\n    actual:   \(actual)\n"
        if !traceTail.isEmpty {
            s += "    last trace events:\n" + traceTail.map { "      " + $0.line }.joined(separator: "\n") + "\n"
        }
        return s
    }
}

/// Runs scripts against a fresh embedded server per case, or an external server.
public struct ScriptRunner: Sendable {
    public var externalSocket: String?
    /// The tables devices are built from.
    public var tables: SpecTables = .builtIn
    /// Driver checking as Jailhouse enforces it: the first finding a statement causes fails
    /// the case there (an `expect finding` right after it does not help).
    public var strict = false
    public var defaultProfile: String
    public var traceTailLength = 12
    /// Give up a `wait irq` as soon as nothing more can come — the embedded server has handled
    /// every connection and every peer's event loop is idle — instead of waiting out its
    /// timeout (`spec check`, where a change that breaks a case must not cost 5 s per wait).
    /// Only with an embedded server: an external one may still be sending.
    public var failFast = false

    public init(externalSocket: String? = nil, defaultProfile: String = "spec") {
        self.externalSocket = externalSocket
        self.defaultProfile = defaultProfile
    }

    public func run(_ script: Script, profile: String? = nil) -> [CaseResult] {
        let p = profile ?? defaultProfile
        return script.cases.map { run($0, of: script, profile: p) }
    }

    func serverConfiguration(_ script: Script, case theCase: Script.Case? = nil) throws -> ServerConfiguration {
        var c = ServerConfiguration()
        c.size = 1 << 20
        c.maxPeers = 4
        c.vectors = 2
        c.outputSectionSize = 0x10000
        for st in script.prelude + (theCase?.server ?? []) {
            guard case .server(let kv) = st.command else { continue }
            func num(_ k: String) throws -> UInt64? {
                guard let t = kv[k] else { return nil }
                return try ScriptParser.number(.init(text: t, column: 1)) { _, reason in ScriptError(path: script.path, line: st.line, column: 1, reason: reason) }
            }
            if let v = try num("vectors") { c.vectors = v }
            if let v = try num("max-peers") { c.maxPeers = v }
            if let v = try num("size") { c.size = v }
            if let v = try num("output") { c.outputSectionSize = v }
            if kv["protocol"] == "v1" {  // spec/ivshmem1.md: the v1 server, v1 devices
                c.dialect = .v1
                c.maxPeers = ServerConfiguration.v1().maxPeers
            } else if let v = try num("protocol") { c.protocolValue = v }
        }
        return c
    }

    func run(_ c: Script.Case, of script: Script, profile: String) -> CaseResult {
        let start = Monotonic.now()
        var result = CaseResult(script: script.path, caseName: c.name, profile: profile, covers: c.covers, skipped: false, failure: nil, duration: 0, trace: [])
        if let reason = c.skipReason(profile: profile) {
            result.skipped = true
            result.skipReason = reason
            return result
        }
        let harness: Harness
        do {
            harness = try Harness(server: externalSocket.map { .external(socketPath: $0) } ?? .embedded(try serverConfiguration(script, case: c)), tables: tables)
        } catch {
            result.failure = CaseFailure(line: c.line, statement: "case \(c.name)", expected: "a server to attach to", actual: "\(error)", traceTail: [])
            return result
        }
        defer { harness.close() }
        result.traceStart = harness.trace.start
        var session = Session(harness: harness, profile: profile, tail: traceTailLength)
        session.failFast = failFast && externalSocket == nil
        session.serverConfiguration = (try? serverConfiguration(script, case: c)) ?? ServerConfiguration()
        for st in c.statements where st.applies(to: profile) {
            do {
                try session.execute(st)
                if strict { try session.failOnNewFindings(st) }
            } catch let f as CaseFailure {
                result.failure = f
                break
            } catch {
                result.failure = CaseFailure(line: st.line, statement: st.text, expected: "the statement to run", actual: "\(error)", traceTail: harness.trace.last(traceTailLength))
                break
            }
        }
        for p in session.v1Peers.values { p.leave() }
        result.trace = harness.trace.all
        result.duration = Monotonic.now() - start
        return result
    }
}

/// The state of one running case: named peers and how far each one's interrupts and findings
/// have been consumed by waits and expectations.
struct Session {
    let harness: Harness
    let profile: String
    let tail: Int
    var serverConfiguration = ServerConfiguration()
    var peers: [String: HarnessPeer] = [:]
    var clients: [String: RawWireClient] = [:]
    /// Peers of a `server protocol=v1` case (ScriptRunner+V1.swift).
    var v1Peers: [String: V1ScriptPeer] = [:]
    var irqCursor: [String: Int] = [:]
    var findingCursor: [String: Int] = [:]
    /// Each peer's interrupt counters when its last `wait irq` was satisfied: what became of the
    /// events since then explains a wait that fails.
    var statsCursor: [String: InterruptStatistics] = [:]
    var failFast = false

    init(harness: Harness, profile: String, tail: Int) {
        self.harness = harness
        self.profile = profile
        self.tail = tail
    }

    func fail(_ st: Script.Statement, expected: String, actual: String) -> CaseFailure {
        CaseFailure(line: st.line, statement: st.text, expected: expected, actual: actual, traceTail: harness.trace.last(tail))
    }

    func peer(_ st: Script.Statement) throws -> HarnessPeer {
        guard let name = st.actor, let p = peers[name] else {
            throw fail(st, expected: "a joined peer named '\(st.actor ?? "")'", actual: "joined: \(peers.keys.sorted().joined(separator: ", "))")
        }
        return p
    }

    /// `--strict`: any finding not yet consumed fails the case at this statement.
    func failOnNewFindings(_ st: Script.Statement) throws {
        for (name, p) in peers.sorted(by: { $0.key < $1.key }) {
            // Environment findings (what a peer or the server did) are not the driver's fault.
            let new = p.device.findings(since: findingCursor[name] ?? 0).filter { $0.kind != .environment }
            if let f = new.first {
                throw fail(st, expected: "no finding (--strict: the first finding is fatal, as Jailhouse stops the cell)", actual: "\(name): \(f)")
            }
        }
    }

    func client(_ st: Script.Statement) throws -> RawWireClient {
        guard let name = st.actor, let c = clients[name] else {
            throw fail(st, expected: "a raw client named '\(st.actor ?? "")'", actual: "clients: \(clients.keys.sorted().joined(separator: ", "))")
        }
        return c
    }

    /// The `settle` barrier: every peer's event loop has handled what was already signalled to
    /// it, and an embedded server has let go of every connection the script closed.
    func settle(_ st: Script.Statement) throws {
        let live = peers.count + clients.count
        if !harness.waitForServerConnections(live, timeout: 10) {
            throw fail(st, expected: "the server to hold at most \(live) connection(s) (the script's peers and clients)", actual: "\(harness.serverConnectionCount.map(String.init) ?? "?") after 10 s")
        }
        for (name, p) in peers.sorted(by: { $0.key < $1.key }) where p.link.isLinkUp {
            if !p.link.settle(timeout: 10) { throw fail(st, expected: "\(name)'s event loop to catch up", actual: "not within 10 s") }
        }
    }

    /// Waits until every joined peer knows every other (the server's introductions are async).
    func converge(_ st: Script.Statement) throws {
        let ids = Set(peers.values.map(\.id))
        // Every vector of every peer, not just vector 0: a script may ring any vector next.
        let ok = peers.values.allSatisfy { p in p.link.waitForIntroductions(timeout: 5) { Set($0).isSuperset(of: ids) && $0.allSatisfy { ids.contains($0) || !p.link.isLinkUp } } }
        if !ok {
            throw fail(st, expected: "all peers to know each other (\(ids.sorted()))", actual: peers.map { "\($0.key) sees \($0.value.link.activePeers)" }.sorted().joined(separator: "; "))
        }
    }

    mutating func execute(_ st: Script.Statement) throws {
        if isV1 { return try executeV1(st) }
        switch st.command {
        case .server: break
        case .sleep(let s): Monotonic.sleep(seconds: s)
        case .settle: try settle(st)
        case .join(let name, let o):
            guard peers[name] == nil else { throw fail(st, expected: "a new peer name", actual: "'\(name)' already joined") }
            let options = AttachOptions(
                profile: o["profile"] ?? profile,
                interrupts: o["intx"].flatMap(UInt8.init).map { .intx(pin: $0) } ?? .msix,
                registerSpace: o["register-space"].flatMap(RegisterSpace.init(rawValue:)) ?? .memory,
                checking: o["checking"] != "off",
                waitMode: o["spin-us"].flatMap(Int.init).map { .spinThenBlock(microseconds: $0) } ?? .blocking)
            let setup = o["setup"].flatMap(PeerSetup.init(rawValue:)) ?? .ready
            if let expectedError = o["fails"] {
                // The attach must fail, with an error mentioning `expectedError`.
                do {
                    let p = try harness.join(name: name, options: options, setup: setup)
                    harness.leave(p)
                    throw fail(st, expected: "attaching to fail with \"\(expectedError)\"", actual: "attached as peer \(p.id)")
                } catch let f as CaseFailure {
                    throw f
                } catch {
                    guard "\(error)".contains(expectedError) else {
                        throw fail(st, expected: "an error mentioning \"\(expectedError)\"", actual: "\(error)")
                    }
                    harness.trace.record(name, .lifecycle, detail: "attach refused as expected: \(error)")
                    return
                }
            }
            do { peers[name] = try harness.join(name: name, options: options, setup: setup) } catch {
                throw fail(st, expected: "\(name) to attach", actual: "\(error)")
            }
            irqCursor[name] = 0
            findingCursor[name] = 0
            statsCursor[name] = peers[name]?.device.statistics
            try converge(st)
        case .leave:
            let p = try peer(st)
            harness.leave(p)
            peers[st.actor!] = nil
            let gone = p.id
            for other in peers.values where !other.link.waitForPeers(timeout: 5, { !$0.contains(gone) }) {
                throw fail(st, expected: "the others to see peer \(gone) leave", actual: "\(other.name) still sees \(other.link.activePeers)")
            }
        case .reset:
            let p = try peer(st)
            harness.trace.record(p.name, .lifecycle, detail: "device reset")
            p.device.reset()
        case .read(let bits, let space, let offset, let compare):
            let p = try peer(st)
            let v = try access(p, st, bits: bits, space: space, offset: offset, write: nil)
            if let (op, expected, mask) = compare {
                let ok = (v & mask == expected & mask) == (op == .equal)
                if !ok {
                    throw fail(st, expected: "\(op == .equal ? "" : "not ")0x\(String(expected & mask, radix: 16))" + (mask != (bits == 64 ? .max : (1 << UInt64(bits)) - 1) ? " (mask 0x\(String(mask, radix: 16)))" : ""),
                               actual: "0x\(String(v & mask, radix: 16))")
                }
            }
        case .write(let bits, let space, let offset, let value):
            let p = try peer(st)
            _ = try access(p, st, bits: bits, space: space, offset: offset, write: value)
        case .ring(let target, let vector):
            let p = try peer(st)
            let id: UInt64
            if let t = peers[target] { id = UInt64(t.id) } else if let n = UInt64(target) { id = n } else {
                throw fail(st, expected: "a peer name or ID", actual: "'\(target)'")
            }
            p.barWrite(0, offset: p.device.registerOffsets.doorbell, size: 4, value: UInt64(BAR0Registers.doorbellValue(peer: UInt32(truncatingIfNeeded: id), vector: UInt32(truncatingIfNeeded: vector))))
        case .state(let v):
            let p = try peer(st)
            p.barWrite(0, offset: p.device.registerOffsets.state, size: 4, value: v)
        case .waitIRQ(let vector, let timeout, let pin, let address, let data):
            let p = try peer(st)
            let cursor = irqCursor[p.name] ?? 0
            let found = awaitInterrupt(p, after: cursor, timeout: timeout) { r in
                if let pin {
                    if case .intx(let q) = r.kind { return q == pin }
                    return false
                }
                guard let vector else { return true }
                if case .msix(let v, _, _) = r.kind { return v == vector }
                return vector == 0
            }
            guard let r = found.record else {
                let seen = p.platform.interrupts.since(cursor).map(\.description)
                let what = pin.map { " on INTx pin \($0)" } ?? vector.map { " on vector \($0)" } ?? ""
                let fate = InterruptDiagnosis.explain(p, vector: vector, since: statsCursor[p.name] ?? InterruptStatistics())
                if let fate { harness.trace.record(p.name, .interrupt, detail: fate.text, requirement: fate.requirement) }
                let waited = found.idle ? "nothing more could come (server and peers idle)" : "waited \(timeout) s"
                throw fail(st, expected: "an interrupt\(what) within \(timeout) s",
                           actual: (seen.isEmpty ? "none" : "only: " + seen.joined(separator: "; ")) + " — " + waited
                               + (fate.map { "; \($0.text) (\($0.requirement))" } ?? ""))
            }
            irqCursor[p.name] = r.sequence + 1
            statsCursor[p.name] = p.device.statistics
            if address != nil || data != nil {
                guard case .msix(_, let a, let d) = r.kind, address.map({ $0 == a }) ?? true, data.map({ $0 == UInt64(d) }) ?? true else {
                    throw fail(st, expected: "an MSI-X message" + (data.map { " of data 0x\(String($0, radix: 16))" } ?? "") + (address.map { " to 0x\(String($0, radix: 16))" } ?? ""),
                               actual: r.description)
                }
            }
        case .expectNoIRQ(let timeout):
            let p = try peer(st)
            _ = p.link.settle(timeout: 10)  // whatever was already signalled has been handled
            let cursor = irqCursor[p.name] ?? 0
            if let r = p.waitForInterrupt(after: cursor, timeout: timeout) {
                throw fail(st, expected: "no interrupt within \(timeout) s", actual: r.description)
            }
        case .expectFinding(let id):
            let p = try peer(st)
            let cursor = findingCursor[p.name] ?? 0
            let new = p.device.findings(since: cursor)
            guard let i = new.firstIndex(where: { $0.requirement == id }) else {
                throw fail(st, expected: "a finding \(id)", actual: new.isEmpty ? "no new findings" : new.map(\.description).joined(separator: "; "))
            }
            findingCursor[p.name] = cursor + i + 1
        case .expectNoFindings:
            let p = try peer(st)
            let new = p.device.findings(since: findingCursor[p.name] ?? 0).filter { $0.kind != .environment }
            if !new.isEmpty { throw fail(st, expected: "no findings", actual: new.map(\.description).joined(separator: "; ")) }
        case .expectPeers(let ids):
            let p = try peer(st)
            if !p.link.waitForPeers(timeout: 5, { $0 == ids.sorted() }) {
                throw fail(st, expected: "active peers \(ids.sorted())", actual: "\(p.link.activePeers)")
            }
        case .client(let name):
            guard clients[name] == nil, peers[name] == nil else { throw fail(st, expected: "a new name", actual: "'\(name)' is taken") }
            harness.noteConnection()
            do { clients[name] = try RawWireClient(name: name, socketPath: harness.socketPath, trace: harness.trace) } catch {
                throw fail(st, expected: "\(name) to connect", actual: "\(error)")
            }
        case .expectMessage(let type, let fields):
            let c = try client(st)
            guard let r = try c.next(timeout: 5) else {
                throw fail(st, expected: "a \(type) message", actual: c.closedByServer ? "the server closed the connection" : "nothing within 5 s")
            }
            var actual: [String: UInt64] = ["fds": UInt64(r.fdCount)]
            let actualType: String
            switch r.message {
            case .initial(let i):
                actualType = "INIT"
                actual.merge(["version": UInt64(i.version), "compatible": UInt64(i.compatibleVersion), "id": UInt64(i.id), "max-peers": UInt64(i.maxPeers),
                              "vectors": UInt64(i.vectors), "protocol": UInt64(i.protocol), "output": i.outputSectionSize]) { $1 }
            case .eventFD(let id, let v):
                actualType = "EVENT_FD"
                actual.merge(["id": UInt64(id), "vector": UInt64(v)]) { $1 }
            case .peerGone(let id):
                actualType = "PEER_GONE"
                actual["id"] = UInt64(id)
            }
            let wanted = fields.merging(fields["fds"] == nil ? ["fds": type == "PEER_GONE" ? 0 : 1] : [:]) { a, _ in a }
            if actualType != type || wanted.contains(where: { actual[$0.key] != $0.value }) {
                throw fail(st, expected: "\(type) " + wanted.sorted { $0.key < $1.key }.map { "\($0.key)=0x\(String($0.value, radix: 16))" }.joined(separator: " "),
                           actual: "\(r)")
            }
        case .expectNoMessage(let timeout):
            let c = try client(st)
            if let r = try c.next(timeout: timeout) { throw fail(st, expected: "no message within \(timeout) s", actual: "\(r)") }
            if c.closedByServer { throw fail(st, expected: "no message within \(timeout) s", actual: "the server closed the connection") }
        case .expectClosed:
            let c = try client(st)
            while let r = try c.next(timeout: 5) {
                harness.trace.record(c.name, .wire, detail: "skipped \(r) waiting for the close")
            }
            if !c.closedByServer { throw fail(st, expected: "the server to close the connection", actual: "still open after 5 s") }
        case .sendBytes(let bytes):
            try client(st).send(bytes)
        case .disconnect:
            let c = try client(st)
            c.close()
            clients[st.actor!] = nil
            harness.trace.record(c.name, .lifecycle, detail: "raw client disconnected")
        case .check(let name):
            guard let check = BuiltinChecks.all[name] else { throw fail(st, expected: "a known check", actual: name) }
            harness.trace.record("check", .lifecycle, detail: "built-in check \(name): \(check.summary)")
            do { try check.run(CheckContext(profile: profile, socketPath: harness.socketPath, server: serverConfiguration, trace: harness.trace)) } catch let f as CheckFailure {
                throw fail(st, expected: f.expected, actual: f.actual)
            } catch {
                throw fail(st, expected: "check \(name) to pass", actual: "\(error)")
            }
        case .expectID(let id):
            let p = try peer(st)
            if p.id != id { throw fail(st, expected: "ID \(id)", actual: "ID \(p.id)") }
        }
    }

    /// One read (write == nil) or write in `space`.
    func access(_ p: HarnessPeer, _ st: Script.Statement, bits: Int, space: Script.Space, offset: UInt64, write: UInt64?) throws -> UInt64 {
        let size = bits / 8
        switch space {
        case .cfg:
            guard bits <= 32 else { throw fail(st, expected: "a config access of 8, 16 or 32 bits", actual: "\(bits) bits") }
            if let v = write { p.configWrite(Int(offset), size: size, value: UInt32(truncatingIfNeeded: v)); return 0 }
            return UInt64(p.configRead(Int(offset), size: size))
        case .reg, .bar0, .msix, .bar1, .bar2:
            let index = [.reg: 0, .bar0: 0, .msix: 1, .bar1: 1, .bar2: 2][space]!
            if let v = write { p.barWrite(index, offset: offset, size: size, value: v); return 0 }
            return p.barRead(index, offset: offset, size: size)
        case .shm:
            if let v = write { p.shmWrite(offset, size: size, value: v); return 0 }
            return p.shmRead(offset, size: size)
        case .mem:
            if let v = write { p.mmioWrite(offset, size: size, value: v); return 0 }
            return p.mmioRead(offset, size: size)
        case .io:
            guard offset <= 0xFFFF, bits <= 32 else { throw fail(st, expected: "a port below 0x10000 and at most 32 bits", actual: "port 0x\(String(offset, radix: 16)), \(bits) bits") }
            if let v = write { p.pioWrite(UInt16(offset), size: size, value: UInt32(truncatingIfNeeded: v)); return 0 }
            return UInt64(p.pioRead(UInt16(offset), size: size))
        }
    }
}
