import IvshmemModel
import IvshmemLink
import IvshmemPosix
import IvshmemTransport
import IvshmemTestSupport
import Testing

/// One v1 function as a register sequence sees it: config space, and BAR-relative accesses.
struct V1Target {
    var name: String
    var config: (Int, Int) throws -> UInt32
    var setConfig: (Int, UInt32, Int) throws -> Void
    var read: (Int, UInt64, Int) throws -> UInt64
    var write: (Int, UInt64, Int, UInt64) throws -> Void
}

/// The same register sequences on our v1 device and on QEMU's `ivshmem-doorbell`, both attached
/// to `ivshmem2 server-v1`, with every difference listed: spec/ivshmem1.md §9 must explain each.
extension IvshmemServerTestSuite {
@Suite("v1 conformance: our device against QEMU", .enabled(if: QEMUMachine.executable != nil, Comment(rawValue: QEMUMachine.missingReason)))
struct V1ConformanceTests {
    /// One step's label and result on each side.
    struct Outcome: CustomStringConvertible {
        var step: String
        var ours: String
        var qemu: String
        var description: String { "\(step): ours \(ours), QEMU \(qemu)" }
    }

    static func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }

    /// Register sequences with a plain result per step, run on one target.
    static func registerSequence(_ t: V1Target, ownID: UInt64) throws -> [(String, String)] {
        var out: [(String, String)] = []
        func r(_ label: String, _ bar: Int, _ off: UInt64, _ size: Int = 4) throws {
            var v = try t.read(bar, off, size)
            if bar == 0 && off == 8 && size == 4 { v = v == ownID ? 0x1D : v }  // IVPosition: its own ID on both
            out.append((label, hex(v)))
        }
        func w(_ bar: Int, _ off: UInt64, _ value: UInt64, _ size: Int = 4) throws { try t.write(bar, off, size, value) }
        try r("IntrMask at reset", 0, 0)
        try w(0, 0, 0xFFFF_FFFF); try r("IntrMask after FFFFFFFFh", 0, 0)
        try w(0, 0, 0x5A5A); try r("IntrMask after 5A5Ah", 0, 0)
        try w(0, 4, 0x3); try r("IntrStatus after 3", 0, 4); try r("IntrStatus read again", 0, 4)
        try r("IVPosition is the own ID", 0, 8)
        try w(0, 8, 0x1234); try r("IVPosition after a write", 0, 8)
        try r("Doorbell read", 0, 0xC)
        try w(0, 0x10, 0xFFFF_FFFF); try r("offset 10h after a write", 0, 0x10); try r("offset FCh", 0, 0xFC)
        try r("16-bit read of IntrMask", 0, 0, 2)
        try w(0, 0, 0x1, 2); try r("IntrMask after a 16-bit write of 1", 0, 0)
        try r("MSI-X entry 0 Vector Control at reset", 1, 12)
        try r("MSI-X entry 1 Message Data at reset", 1, 24)
        try r("PBA at reset", 1, 0x800)
        try w(1, 0x800, 0xFFFF_FFFF); try r("PBA after a write", 1, 0x800)
        try r("BAR1 beyond the table and the PBA", 1, 0x400)
        let command = try t.config(0x04, 2)
        try t.setConfig(0x04, 0xFFFF, 2)
        out.append(("Command after FFFFh", hex(UInt64(try t.config(0x04, 2)))))
        try t.setConfig(0x04, command, 2)
        try t.setConfig(0x06, 0xFFFF, 2)
        out.append(("Status after FFFFh", hex(UInt64(try t.config(0x06, 2)))))
        return out
    }

    @Test("V1-REG-DB-1, V1-IRQ-MSIX-1, V1-IRQ-MSIX-2, V1-WIRE-CLI-8: our v1 device and QEMU's on one server: the same register sequences and interrupts, every difference one spec/ivshmem1.md explains")
    func compareWithQEMU() throws {
        let scratch = try ScratchDirectory()
        let (server, machine) = try QEMUDoorbellTests.Setup.start(scratch)
        defer { machine.terminate(); _ = try? server.terminate() }
        let sock = server.socketPath
        let ours = try AttachedV1Device.attach(path: sock, vectors: 2)
        defer { ours.close() }
        #expect(ours.id == 1 && ours.device.readRegister(0x08) == 1, "IVPosition is the ID our server gave")
        let irq = V1Interrupts()
        ours.device.interruptSink = irq
        let pci = try QEMUPCIFunction.find(vendor: 0x1AF4, device: 0x1110, in: machine)

        // 1. Configuration space, untouched: dword by dword, probes included.
        let qemuImage = try V1ConfigImage(reading: { try pci.config($0, size: $1) }, writing: { try pci.setConfig($0, $1, size: $2) })
        let ourImage = try V1ConfigImage(reading: { ours.device.configRead(offset: $0, size: $1) }, writing: { ours.device.configWrite(offset: $0, size: $2, value: $1) })
        var differences: [Outcome] = []
        for offset in ourImage.dwords.keys.sorted() where ourImage.dwords[offset] != qemuImage.dwords[offset] {
            differences.append(Outcome(step: "config dword \(Self.hex(UInt64(offset)))", ours: Self.hex(UInt64(ourImage.dwords[offset]!)), qemu: Self.hex(UInt64(qemuImage.dwords[offset] ?? 0))))
        }
        for bar in 0..<6 where ourImage.barProbes[bar] != qemuImage.barProbes[bar] {
            differences.append(Outcome(step: "BAR\(bar) probe", ours: Self.hex(UInt64(ourImage.barProbes[bar])), qemu: Self.hex(UInt64(qemuImage.barProbes[bar]))))
        }
        #expect(ourImage.messageControlWritten == qemuImage.messageControlWritten && ourImage.interruptLineWritten == qemuImage.interruptLineWritten)

        // 2. Register sequences.
        let qemu = try QEMUIvshmem(machine: machine)
        ours.device.configWrite(offset: 0x04, size: 2, value: 0x6)
        let bases = [QEMUIvshmem.bar0, QEMUIvshmem.bar1, QEMUIvshmem.bar2]
        let qemuTarget = V1Target(name: "QEMU", config: { try pci.config($0, size: $1) }, setConfig: { try pci.setConfig($0, $1, size: $2) },
                                  read: { try machine.read(bases[$0] + $1, size: $2) }, write: { try machine.write(bases[$0] + $1, size: $2, $3) })
        let ourTarget = V1Target(name: "ours", config: { ours.device.configRead(offset: $0, size: $1) }, setConfig: { ours.device.configWrite(offset: $0, size: $2, value: $1) },
                                 read: { ours.device.barRead($0, offset: $1, size: $2) }, write: { ours.device.barWrite($0, offset: $1, size: $2, value: $3) })
        let q = try Self.registerSequence(qemuTarget, ownID: 0)
        let o = try Self.registerSequence(ourTarget, ownID: 1)
        for (a, b) in zip(o, q) where a.1 != b.1 { differences.append(Outcome(step: a.0, ours: a.1, qemu: b.1)) }

        // 3. Interrupts, both ways, through the server's eventfds.
        try qemu.enableMSIX(vectors: 2)
        for v in 0..<2 {
            let entry = UInt64(v) * 16
            ours.device.barWrite(1, offset: entry, size: 4, value: QEMUIvshmem.messageAddress(v))
            ours.device.barWrite(1, offset: entry + 8, size: 4, value: UInt64(QEMUIvshmem.messageData(v)))
            ours.device.barWrite(1, offset: entry + 12, size: 4, value: 0)
        }
        ours.device.configWrite(offset: 0x42, size: 2, value: 0x8000)
        ours.device.writeRegister(0x0C, 0 << 16 | 1)
        #expect(qemu.waitForMessage(vector: 1), "ours → QEMU, vector 1")
        // QEMU takes our eventfds asynchronously: ring until one arrives.
        #expect(Monotonic.poll(timeout: 10, interval: 0.005) {
            (try? qemu.setRegister(0x0C, 1 << 16 | 1)) != nil && irq.take(vector: 1, timeout: 0.02)
        }, "QEMU → ours, vector 1")
        #expect(irq.messages.withLock { $0.allSatisfy { $0.address == QEMUIvshmem.messageAddress($0.vector) && $0.data == QEMUIvshmem.messageData($0.vector) } })
        irq.messages.withLock { $0.removeAll() }
        // Vector bits 15:8 (difference D4).
        ours.device.writeRegister(0x0C, 0 << 16 | 0x101)
        let qemuGot = qemu.waitForMessage(vector: 1, timeout: 0.5)
        try qemu.setRegister(0x0C, 1 << 16 | 0x101)
        let oursGot = irq.take(vector: 1, timeout: 0.5)
        if qemuGot != oursGot {
            differences.append(Outcome(step: "doorbell with vector 101h", ours: qemuGot ? "rings vector 1" : "rings nothing", qemu: oursGot ? "rings vector 1" : "rings nothing"))
        }
        // Masked vector 0 on both: each rings the other; both latch the PBA bit; unmask sends it.
        try qemu.setMasked(vector: 0, true)
        ours.device.barWrite(1, offset: 12, size: 4, value: 1)
        ours.device.writeRegister(0x0C, 0 << 16 | 0)
        try qemu.setRegister(0x0C, 1 << 16 | 0)
        #expect(Monotonic.poll(timeout: 10) { (try? qemu.pendingBits()) == 1 && ours.device.barRead(1, offset: 0x800, size: 4) == 1 }, "PBA bit 0 on both")
        try qemu.setMasked(vector: 0, false)
        ours.device.barWrite(1, offset: 12, size: 4, value: 0)
        #expect(qemu.waitForMessage(vector: 0) && irq.take(vector: 0))
        #expect(ours.protocolErrors.isEmpty, "\(ours.protocolErrors)")

        // Every difference must be one spec/ivshmem1.md §9 explains.
        let explained: [String: String] = [
            "16-bit read of IntrMask": "D7", "IntrMask after a 16-bit write of 1": "D7",
            "doorbell with vector 101h": "D4",
        ]
        for d in differences { print("v1 conformance difference: \(d) [\(explained[d.step] ?? "UNEXPLAINED")]") }
        let unexplained = differences.filter { explained[$0.step] == nil }
        #expect(unexplained.isEmpty, "differences spec/ivshmem1.md does not explain: \(unexplained)")
    }
}
}
