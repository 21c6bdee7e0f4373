import Foundation
import IvshmemHarness
import IvshmemModel
import IvshmemSync
import IvshmemTransport

/// `ivshmem2 peer --v1`: a v1 device (spec/ivshmem1.md) attached to a v1 server, programmed
/// as a driver would (Memory Space and Bus Master, one MSI-X message per vector, MSI-X on),
/// with the v2 peer's command language where v1 has the feature: `dump`, `int <peer>
/// <vector|all>`, `wait [s]`, `shm-write`, `shm-read`, `reset`, `quit`.
final class V1PeerSession: V1InterruptSink, @unchecked Sendable {
    let attached: AttachedV1Device
    var device: IvshmemV1Device { attached.device }
    private let arrived = Locked<[Int]>([])
    private let signal = DispatchSemaphore(value: 0)

    init(attached: AttachedV1Device) {
        self.attached = attached
        attached.device.interruptSink = self
        program()
    }

    /// What a driver does after probing (the harness's v1 set-up).
    private func program() { V1DriverSetup.ready(device) }

    func msixMessage(vector: Int, address: UInt64, data: UInt32) {
        writeStdout("irq: vector \(vector)\n")
        arrived.withLock { $0.append(vector) }
        signal.signal()
    }

    func intxLevel(_ asserted: Bool) {}

    func announce() {
        writeStdout("ready: id \(attached.id) v1 vectors \(device.configuration.vectors) shm \(device.configuration.sharedMemorySize)\n")
        for p in attached.link.knownPeers where p != attached.id { writeStdout("peer: \(p)\n") }
    }

    /// Runs one command line; returns false on quit.
    func execute(_ raw: String) throws -> Bool {
        guard let (cmd, args) = commandWords(raw) else { return true }
        switch cmd {
        case "quit", "exit": return false
        case "dump":
            let r = device.registerOffsets
            writeStdout("id: \(device.readRegister(r.ivPosition)) vectors: \(device.configuration.vectors) intr-mask: 0x\(String(device.readRegister(r.interruptMask), radix: 16))\n")
            writeStdout("peers: \(attached.link.knownPeers.map(String.init).joined(separator: " "))\n")
        case "int":
            guard args.count == 2, let p = UInt16(args[0]) else { return usage("int <peer> <vector|all>") }
            let vectors: [Int]
            if args[1] == "all" { vectors = Array(0..<device.configuration.vectors) } else if let v = Int(args[1]), (0...0xFFFF).contains(v) { vectors = [v] } else { return usage("int <peer> <vector|all>") }
            for v in vectors {
                let before = device.findings.count
                device.writeRegister(device.registerOffsets.doorbell, V1BAR0Registers.doorbellValue(peer: UInt32(p), vector: UInt32(v)))
                writeStdout("ok: rang peer \(p) vector \(v)\n")
                for f in device.findings.dropFirst(before) { writeStdout("finding: \(f)\n") }
            }
        case "wait":
            let t = args.first.flatMap(Double.init) ?? 5
            guard t.isFinite, t >= 0, t <= 3600 else { return usage("wait [seconds between 0 and 3600]") }
            if signal.wait(timeout: .now() + t) == .success, let v = arrived.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) {
                writeStdout("waited: vector \(v)\n")
            } else {
                writeStdout("timeout: no interrupt within \(t) s\n")
            }
        case "shm-write":
            guard args.count >= 2, let off = try? parseNumber(args[0]) else { return usage("shm-write <offset> <text>") }
            let text = Array(args.dropFirst().joined(separator: " ").utf8)
            guard off < device.configuration.sharedMemorySize, UInt64(text.count) <= device.configuration.sharedMemorySize - off else {
                return usage("shm-write: the text does not fit the \(device.configuration.sharedMemorySize)-byte shared memory at 0x\(String(off, radix: 16))")
            }
            for (i, byte) in text.enumerated() { device.barWrite(2, offset: off + UInt64(i), size: 1, value: UInt64(byte)) }
            writeStdout("ok: wrote \(text.count) bytes at 0x\(String(off, radix: 16))\n")
        case "shm-read":
            guard args.count == 2, let off = try? parseNumber(args[0]), let n = Int(args[1]), n > 0, n <= 4096 else { return usage("shm-read <offset> <length ≤ 4096>") }
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: device.barRead(2, offset: off + UInt64($0), size: 1)) }
            let text = String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
            writeStdout("shm: 0x\(String(off, radix: 16)) \"\(text)\" \(bytes.prefix(16).map { String($0, radix: 16) }.joined(separator: " "))\n")
        case "reset":
            device.reset()
            program()
            writeStdout("ok: reset\n")
        case "help": writeStdout("commands (v1): dump, int <peer> <vector|all>, wait [s], shm-write, shm-read, reset, quit\n")
        default: return usage("unknown command '\(cmd)' (try help)")
        }
        return true
    }

    private func usage(_ m: String) -> Bool {
        writeStdout("error: usage: \(m)\n")
        return true
    }
}
