#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import IvshmemModel
import IvshmemPlatform
import IvshmemPosix
import IvshmemTransport

/// `ivshmem2 peer`: one emulated device attached to a server, driven from a prompt or a script
/// on stdin, in the spirit of the reference ivshmem-client. It plays the driver: assigns BARs,
/// enables MSI-X with one message per vector, and enables interrupts.
struct PeerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peer",
        abstract: "Attach an emulated ivshmem v2 device (or, with --v1, a v1 device) to a server and drive it from stdin.",
        discussion: """
            Commands (one per line; '#' starts a comment):
              dump                 ID, vectors, peers, state table, Interrupt Control
              int <peer> <vector>  ring a peer's vector (Doorbell register)
              int <peer> all       ring every vector of a peer
              int all              ring every vector of every other peer
              state <value>        write the State register (peers get vector 0)
              wait [seconds]       wait for the next interrupt (default 5 s)
              wait-peers <n> [s]   wait until at least n other peers are fully introduced
                                   (default 5 s); prints 'peers: …' or 'timeout: …'

              shm-write <offset> <text>   write text into shared memory (rights enforced)
              shm-read <offset> <length>  print shared memory bytes as text and hex
              reset                device reset
              quit                 detach (the others see PEER_GONE)
            'ready:' is printed once the server has introduced every peer connected before
            this one (their 'joined:' lines follow it), so commands on the next lines reach
            them. Output lines are 'key: value' records, e.g. 'irq: vector 1', 'joined: peer
            2', 'left: peer 2', so scripts and tests can follow them.
            """)

    @Option(name: [.customShort("S"), .long], help: "Server socket path.") var socket: String = "/tmp/ivshmem_socket"
    @Option(help: "Behaviour profile: spec, jailhouse or qemu-rfc.") var profile: String = "spec"
    @Option(name: .customLong("spin-us"), help: "Spin this many microseconds before sleeping (0: block).") var spinMicroseconds: Int = 0
    @Flag(help: "Attach an ivshmem v1 device (1af4:1110) to a v1 server (ivshmem2 server-v1, QEMU's ivshmem-server).") var v1 = false
    @Option(help: "With --v1: the device's vectors (QEMU's 'vectors'; the server's -n).") var vectors: Int = 1
    @OptionGroup var logging: LoggingOptions

    func run() throws {
        try Signals.ignoreBrokenPipe()
        logging.apply()
        if v1 { return try runV1() }
        let options = AttachOptions(profile: profile, waitMode: spinMicroseconds > 0 ? .spinThenBlock(microseconds: spinMicroseconds) : .blocking)
        let link: AttachedDevice
        do { link = try AttachedDevice.attach(socketPath: socket, options: options) } catch {
            throw ToolFailure("peer: cannot attach to the server at \(socket): \(error)")
        }
        defer { link.close() }
        let session = try PeerSession(link: link)
        try withExtendedLifetime(session) {
            // The link stops delivering before the session's platform goes away.
            defer { link.close() }
            session.announce()
            try commandLoop(prompt: "ivshmem2[\(link.device.id)]> ", session.execute)
        }
    }

    /// Reads stdin line by line into `execute` until it returns false or input ends. The
    /// prompt is for a person at a terminal; piped input gets only the records.
    func commandLoop(prompt: String, _ execute: (String) throws -> Bool) throws {
        var reader = LineReader(fd: .standardInput)
        let showPrompt = !logging.quiet && FileDescriptor.standardInput.isTerminal
        while true {
            if showPrompt { writeStdout(prompt) }
            guard let line = try reader.next() else { break }
            if try !execute(line) { break }
        }
    }
}

/// A command line's words, without a `#` comment: the command and its arguments.
func commandWords(_ raw: String) -> (command: String, arguments: [String])? {
    let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
    let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
    guard let command = words.first else { return nil }
    return (command, Array(words.dropFirst()))
}

extension PeerCommand {
    /// `--v1`: the same loop over a v1 device (spec/ivshmem1.md).
    func runV1() throws {
        guard (1...V1Limits.maxVectors).contains(vectors) else { throw ValidationError("--vectors must be between 1 and \(V1Limits.maxVectors), got \(vectors)") }
        let attached: AttachedV1Device
        do { attached = try AttachedV1Device.attach(path: socket, vectors: vectors) } catch {
            throw ValidationError("\(error)")
        }
        defer { attached.close() }
        let session = V1PeerSession(attached: attached)
        session.announce()
        try commandLoop(prompt: "ivshmem-v1[\(attached.id)]> ", session.execute)
    }
}

/// A device on a platform, programmed the way a driver would, plus the command interpreter.
final class PeerSession: @unchecked Sendable {
    let link: AttachedDevice
    let platform = PCIPlatform()
    let bdf: BDF
    let registers: UInt64
    let bars: [Int: UInt64]
    var device: IvshmemDevice { link.device }
    private var seen = 0

    init(link: AttachedDevice) throws {
        self.link = link
        bdf = try BDF(device: 5)
        bars = try DriverSetup.plugAndEnable(link.device, into: platform, at: bdf)
        registers = bars[0] ?? 0
        let id = link.device.id
        platform.interrupts.addHandler { r in
            if case .msix(let v, _, _) = r.kind { writeStdout("irq: vector \(v)\n") }
            if case .intx = r.kind { writeStdout("irq: intx\n") }
        }
        link.onLinkEvent { e in
            switch e {
            case .eventFD(let p, 0) where p != id: writeStdout("joined: peer \(p)\n")
            case .eventFD: break
            case .peerLeft(let p): writeStdout("left: peer \(p)\n")
            case .protocolError(let m): writeStdout("error: \(m)\n")
            case .linkDown(let m): writeStdout("link-down: \(m)\n")
            }
        }
    }

    func announce() {
        let d = device
        writeStdout("ready: id \(d.id) max-peers \(d.configuration.maxPeers) vectors \(d.configuration.vectors) protocol 0x\(String(d.configuration.protocolType, radix: 16)) shm \(d.layout.geometry.totalSize)\n")
        for p in link.activePeers where p != d.id { writeStdout("joined: peer \(p)\n") }
    }

    /// Runs one command line; returns false on quit.
    func execute(_ raw: String) throws -> Bool {
        guard let (cmd, args) = commandWords(raw) else { return true }
        switch cmd {
        case "quit", "exit": return false
        case "dump": dump()
        case "int": try ring(args)
        case "state":
            guard args.count == 1, let v = try? parseNumber(args[0]), v <= UInt32.max else { return usage("state <value>") }
            platform.mmioWrite(registers + device.registerOffsets.state, size: 4, value: v)
            writeStdout("ok: state 0x\(String(v, radix: 16))\n")
        case "wait":
            let t = args.first.flatMap(Double.init) ?? 5
            guard t.isFinite, t >= 0, t <= 3600 else { return usage("wait [seconds between 0 and 3600]") }
            if let r = platform.interrupts.wait(after: seen, timeout: t) {
                seen = r.sequence + 1
                writeStdout("waited: \(r.kind == .intx(pin: 1) ? "intx" : "vector \(vectorOf(r))")\n")
            } else {
                writeStdout("timeout: no interrupt within \(t) s\n")
            }
        case "wait-peers":
            guard (1...2).contains(args.count), let n = Int(args[0]), n >= 0, n < Int(device.configuration.maxPeers) else {
                return usage("wait-peers <count below max-peers> [seconds]")
            }
            let t = args.count == 2 ? Double(args[1]) ?? -1 : 5
            guard t.isFinite, t >= 0, t <= 3600 else { return usage("wait-peers <count> [seconds between 0 and 3600]") }
            let me = device.id
            let others = { self.link.introducedPeers.filter { $0 != me } }
            if link.waitForIntroductions(timeout: t, { peers in peers.filter { $0 != me }.count >= n }) {
                writeStdout("peers: \(others().map(String.init).joined(separator: " "))\n")
            } else {
                writeStdout("timeout: \(others().count) of \(n) peers within \(t) s\n")
            }
        case "shm-write":
            guard args.count >= 2, let off = try? parseNumber(args[0]) else { return usage("shm-write <offset> <text>") }
            let text = Array(args.dropFirst().joined(separator: " ").utf8)
            let ok = text.withUnsafeBytes { device.sharedMemoryWrite(offset: off, from: $0) }
            writeStdout(ok ? "ok: wrote \(text.count) bytes at 0x\(String(off, radix: 16))\n" : "refused: \(device.findings.last?.description ?? "write not allowed")\n")
        case "shm-read":
            guard args.count == 2, let off = try? parseNumber(args[0]), let n = Int(args[1]), n > 0, n <= 4096 else { return usage("shm-read <offset> <length ≤ 4096>") }
            var buf = [UInt8](repeating: 0, count: n)
            _ = buf.withUnsafeMutableBytes { device.sharedMemoryRead(offset: off, into: $0) }
            let text = String(decoding: buf.prefix { $0 != 0 }, as: UTF8.self)
            writeStdout("shm: 0x\(String(off, radix: 16)) \"\(text)\" \(buf.prefix(16).map { String($0, radix: 16) }.joined(separator: " "))\n")
        case "reset":
            device.reset()
            DriverSetup.enableInterrupts(device, on: platform, at: bdf, bars: bars)
            writeStdout("ok: reset\n")
        case "help": writeStdout("commands: dump, int <peer> <vector|all>, int all, state <v>, wait [s], wait-peers <n> [s], shm-write, shm-read, reset, quit\n")
        default: return usage("unknown command '\(cmd)' (try help)")
        }
        return true
    }

    private func vectorOf(_ r: InterruptRecord) -> Int {
        if case .msix(let v, _, _) = r.kind { return v }
        return 0
    }

    private func usage(_ m: String) -> Bool {
        writeStdout("error: usage: \(m)\n")
        return true
    }

    private func ring(_ args: [String]) throws {
        let d = device
        let doorbell = registers + d.registerOffsets.doorbell
        func ringOne(_ peer: UInt32, _ vector: UInt32) {
            platform.mmioWrite(doorbell, size: 4, value: UInt64(BAR0Registers.doorbellValue(peer: peer, vector: vector)))
            writeStdout("ok: rang peer \(peer) vector \(vector)\n")
        }
        switch args.count {
        case 1 where args[0] == "all":
            for p in link.activePeers where p != d.id { for v in 0..<d.configuration.vectors { ringOne(p, UInt32(v)) } }
        case 2:
            guard let p = UInt32(args[0]) else { _ = usage("int <peer> <vector|all>"); return }
            if args[1] == "all" {
                for v in 0..<d.configuration.vectors { ringOne(p, UInt32(v)) }
            } else if let v = UInt32(args[1]), v <= 0xFFFF {
                let before = d.findingCount
                ringOne(p, v)
                for f in d.findings(since: before) { writeStdout("finding: \(f)\n") }
            } else { _ = usage("int <peer> <vector|all>") }
        default: _ = usage("int <peer> <vector> | int <peer> all | int all")
        }
    }

    func dump() {
        let d = device
        writeStdout("id: \(d.readRegister(d.registerOffsets.id)) max-peers: \(d.readRegister(d.registerOffsets.maxPeers)) vectors: \(d.configuration.vectors) interrupt-control: \(d.readRegister(d.registerOffsets.interruptControl)) state: 0x\(String(d.readRegister(d.registerOffsets.state), radix: 16))\n")
        let peers = link.activePeers
        writeStdout("peers: \(peers.map(String.init).joined(separator: " "))\n")
        for p in 0..<min(d.configuration.maxPeers, 64) {
            writeStdout("state-table: peer \(p) 0x\(String(d.stateTableEntry(p), radix: 16)) \(peers.contains(p) ? "active" : "inactive")\n")
        }
        let s = d.statistics
        writeStdout("interrupts: received \(s.received) delivered \(s.delivered) dropped \(s.droppedDisabled + s.droppedMasked + s.droppedNoBusMaster)\n")
    }
}

/// Reads lines from a file descriptor without Foundation buffering.
struct LineReader {
    let fd: FileDescriptor
    var buffer: [UInt8] = []
    var eof = false

    mutating func next() throws -> String? {
        while true {
            if let nl = buffer.firstIndex(of: 10) {
                let line = String(decoding: buffer[..<nl], as: UTF8.self)
                buffer.removeSubrange(...nl)
                return line
            }
            if eof {
                guard !buffer.isEmpty else { return nil }
                defer { buffer.removeAll() }
                return String(decoding: buffer, as: UTF8.self)
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = try chunk.withUnsafeMutableBytes { try fd.read(into: $0) }
            if n == 0 { eof = true } else { buffer += chunk[..<n] }
        }
    }
}
