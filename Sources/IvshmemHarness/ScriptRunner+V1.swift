import IvshmemModel
import IvshmemPosix

/// Scripts against `server protocol=v1` (spec/ivshmem1.md): the same statements where v1 has
/// the feature — join, leave, reset, reads and writes (`cfg`, `reg`/`bar0`, `msix`/`bar1`,
/// `bar2`/`shm`), ring, wait irq, expect no-irq, findings, id, peers, settle, sleep. `state`,
/// INTx, raw v2 wire clients and built-in checks are v2 only and fail with a message.
extension Session {
    var isV1: Bool { serverConfiguration.dialect == .v1 }

    func v1Peer(_ st: Script.Statement) throws -> V1ScriptPeer {
        guard let name = st.actor, let p = v1Peers[name] else {
            throw fail(st, expected: "a joined v1 peer named '\(st.actor ?? "")'", actual: "joined: \(v1Peers.keys.sorted().joined(separator: ", "))")
        }
        return p
    }

    /// Waits until every joined v1 peer holds every other's eventfds (the server's
    /// introductions are asynchronous).
    func convergeV1(_ st: Script.Statement) throws {
        let ids = Set(v1Peers.values.map(\.id))
        let ok = Monotonic.poll(timeout: 5) { v1Peers.values.allSatisfy { Set($0.attached.link.knownPeers) == ids } }
        if !ok {
            throw fail(st, expected: "all v1 peers to know each other (\(ids.sorted()))", actual: v1Peers.map { "\($0.key) knows \($0.value.attached.link.knownPeers)" }.sorted().joined(separator: "; "))
        }
    }

    mutating func executeV1(_ st: Script.Statement) throws {
        switch st.command {
        case .server: break
        case .sleep(let s): Monotonic.sleep(seconds: s)
        case .settle:
            let live = v1Peers.count
            if !harness.waitForServerConnections(live, timeout: 10) {
                throw fail(st, expected: "the server to hold at most \(live) connection(s)", actual: "\(harness.serverConnectionCount.map(String.init) ?? "?") after 10 s")
            }
        case .join(let name, let o):
            guard v1Peers[name] == nil else { throw fail(st, expected: "a new peer name", actual: "'\(name)' already joined") }
            harness.noteConnection()
            do {
                v1Peers[name] = try V1ScriptPeer(name: name, socketPath: harness.socketPath, vectors: Int(serverConfiguration.vectors),
                                                 checking: o["checking"] != "off", ready: (o["setup"] ?? "ready") == "ready", trace: harness.trace)
            } catch {
                throw fail(st, expected: "\(name) to attach", actual: "\(error)")
            }
            irqCursor[name] = 0
            findingCursor[name] = 0
            try convergeV1(st)
        case .leave:
            let p = try v1Peer(st)
            p.leave()
            v1Peers[st.actor!] = nil
            for other in v1Peers.values where !Monotonic.poll(timeout: 5, { !other.attached.link.knownPeers.contains(p.id) }) {
                throw fail(st, expected: "the others to see peer \(p.id) leave", actual: "\(other.name) still knows \(other.attached.link.knownPeers)")
            }
        case .reset:
            try v1Peer(st).device.reset()
        case .read(let bits, let space, let offset, let compare):
            let v = try accessV1(try v1Peer(st), st, bits: bits, space: space, offset: offset, write: nil)
            if let (op, expected, mask) = compare, (v & mask == expected & mask) != (op == .equal) {
                throw fail(st, expected: "\(op == .equal ? "" : "not ")0x\(String(expected & mask, radix: 16))", actual: "0x\(String(v & mask, radix: 16))")
            }
        case .write(let bits, let space, let offset, let value):
            _ = try accessV1(try v1Peer(st), st, bits: bits, space: space, offset: offset, write: value)
        case .ring(let target, let vector):
            let p = try v1Peer(st)
            let id: UInt64
            if let t = v1Peers[target] { id = UInt64(t.id) } else if let n = UInt64(target) { id = n } else {
                throw fail(st, expected: "a peer name or ID", actual: "'\(target)'")
            }
            p.device.writeRegister(p.device.registerOffsets.doorbell,
                                   V1BAR0Registers.doorbellValue(peer: UInt32(truncatingIfNeeded: id), vector: UInt32(truncatingIfNeeded: vector)))
        case .waitIRQ(let vector, let timeout, let pin, let address, let data):
            let p = try v1Peer(st)
            guard pin == nil else { throw fail(st, expected: "an MSI-X wait (a v1 doorbell device has no INTx)", actual: "pin=\(pin!)") }
            let cursor = irqCursor[p.name] ?? 0
            guard let m = p.waitForMessage(vector: vector, after: cursor, timeout: timeout) else {
                let seen = p.messages(since: cursor).map(\.description)
                throw fail(st, expected: "an interrupt\(vector.map { " on vector \($0)" } ?? "") within \(timeout) s", actual: seen.isEmpty ? "none" : "only: " + seen.joined(separator: "; "))
            }
            irqCursor[p.name] = m.sequence + 1
            if address.map({ $0 != m.address }) ?? false || data.map({ $0 != UInt64(m.data) }) ?? false {
                throw fail(st, expected: "an MSI-X message" + (data.map { " of data 0x\(String($0, radix: 16))" } ?? "") + (address.map { " to 0x\(String($0, radix: 16))" } ?? ""), actual: m.description)
            }
        case .expectNoIRQ(let timeout):
            let p = try v1Peer(st)
            if let m = p.waitForMessage(vector: nil, after: irqCursor[p.name] ?? 0, timeout: timeout) {
                throw fail(st, expected: "no interrupt within \(timeout) s", actual: m.description)
            }
        case .expectFinding(let id):
            let p = try v1Peer(st)
            let cursor = findingCursor[p.name] ?? 0
            let new = Array(p.device.findings.dropFirst(cursor))
            guard let i = new.firstIndex(where: { $0.requirement == id }) else {
                throw fail(st, expected: "a finding \(id)", actual: new.isEmpty ? "no new findings" : new.map(\.description).joined(separator: "; "))
            }
            findingCursor[p.name] = cursor + i + 1
        case .expectNoFindings:
            let p = try v1Peer(st)
            let new = p.device.findings.dropFirst(findingCursor[p.name] ?? 0).filter { $0.kind != .environment }
            if !new.isEmpty { throw fail(st, expected: "no findings", actual: new.map(\.description).joined(separator: "; ")) }
        case .expectPeers(let ids):
            let p = try v1Peer(st)
            let wanted = ids.sorted().map { UInt16(truncatingIfNeeded: $0) }
            if !Monotonic.poll(timeout: 5, { p.attached.link.knownPeers == wanted }) {
                throw fail(st, expected: "peers \(wanted)", actual: "\(p.attached.link.knownPeers)")
            }
        case .expectID(let id):
            let p = try v1Peer(st)
            if UInt32(p.id) != id { throw fail(st, expected: "ID \(id)", actual: "ID \(p.id)") }
        case .state, .client, .expectMessage, .expectNoMessage, .expectClosed, .sendBytes, .disconnect, .check:
            throw fail(st, expected: "a statement a v1 device or server has (server protocol=v1)", actual: "'\(st.text)' is v2 only")
        }
    }

    /// One v1 read (write == nil) or write; `shm` is BAR2 (a v1 memory has no access rights).
    func accessV1(_ p: V1ScriptPeer, _ st: Script.Statement, bits: Int, space: Script.Space, offset: UInt64, write: UInt64?) throws -> UInt64 {
        let size = bits / 8
        let bar: Int
        switch space {
        case .cfg:
            guard bits <= 32 else { throw fail(st, expected: "a config access of 8, 16 or 32 bits", actual: "\(bits) bits") }
            if let v = write { p.device.configWrite(offset: Int(offset), size: size, value: UInt32(truncatingIfNeeded: v)); return 0 }
            return UInt64(p.device.configRead(offset: Int(offset), size: size))
        case .reg, .bar0: bar = 0
        case .msix, .bar1: bar = 1
        case .bar2, .shm: bar = 2
        case .mem, .io:
            throw fail(st, expected: "cfg, reg/bar0, msix/bar1, bar2 or shm (a v1 device is not on a platform bus)", actual: space.rawValue)
        }
        if let v = write { p.device.barWrite(bar, offset: offset, size: size, value: v); return 0 }
        return p.device.barRead(bar, offset: offset, size: size)
    }
}
