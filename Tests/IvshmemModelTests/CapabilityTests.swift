import IvshmemModel
import IvshmemSpec
import Testing

@Suite("Vendor-specific and MSI-X capabilities")
struct CapabilityTests {

    // MARK: vendor capability

    @Test("CAP-VS-1: vendor capability 09h present in every profile and mode")
    func vendorPresent() throws {
        let configs: [DeviceConfiguration] = allProfiles.map { makeConfig(profile: $0) } + [
            makeConfig(profile: "spec", interrupts: .intx(pin: 1)), makeConfig(profile: "jailhouse", interrupts: .intx(pin: 3)),
            makeConfig(profile: "spec", registerSpace: .io),
        ]
        for c in configs {
            let (_, d) = try makeDevice(c)
            let ptr = Int(d.cfg8(0x34))
            #expect(d.cfg8(ptr) == 0x09, "\(c.profileName) \(c.interrupts)")
            #expect(ptr == d.vendorCap)
        }
    }

    @Test("CAP-VS-2, CAP-VS-7: length 20h with Base Address (jailhouse), 18h otherwise")
    func vendorLengthAndBase() throws {
        for p in allProfiles {
            let (_, d) = try makeDevice(makeConfig(profile: p, baseAddress: 0x12_3456_7000))
            let vs = d.vendorCap
            if p == "jailhouse" {
                #expect(d.cfg8(vs + 2) == 0x20)
                #expect(d.cfg64(vs + 0x18) == 0x12_3456_7000)
                d.configWrite(offset: vs + 0x18, size: 4, value: 0)
                d.configWrite(offset: vs + 0x1C, size: 4, value: 0xFFFF_FFFF)
                #expect(d.cfg64(vs + 0x18) == 0x12_3456_7000)
            } else {
                #expect(d.cfg8(vs + 2) == 0x18, "\(p)")
                #expect(d.cfg64(vs + 0x18) == 0 || p == "qemu-rfc", "\(p): no Base Address field")
                if p == "spec" { #expect(d.cfg32(vs + 0x18) == 0 && d.cfg32(vs + 0x1C) == 0) }
            }
        }
    }

    @Test("CAP-VS-3, CAP-VS-10: Privileged Control bit 0 is one-shot, bits 7:1 read 0", arguments: allProfiles)
    func privilegedControl(profile: String) throws {
        let (_, d) = try makeDevice(makeConfig(profile: profile))
        let vs = d.vendorCap
        #expect(d.cfg8(vs + 3) == 0)
        d.configWrite(offset: vs + 3, size: 1, value: 0xFF)
        #expect(d.cfg8(vs + 3) == 0x01)
        d.configWrite(offset: vs + 3, size: 1, value: 0xFE)
        #expect(d.cfg8(vs + 3) == 0x00)
        d.setOneShot(true)
        #expect(d.cfg8(vs + 3) == 0x01)
        #expect(d.findings.isEmpty)
    }

    @Test("CAP-VS-4, CAP-VS-5, CAP-VS-6, CAP-VS-8: section size fields", arguments: allProfiles)
    func sizeFields(profile: String) throws {
        let cases: [(UInt32, UInt64, UInt64)] = [(2, 0x4000, 0x2000), (2, 0, 0x1000), (3, 0x1000, 0), (2, 0, 0), (1025, 0x1_0000_0000, 0x1000)]
        for (n, rw, out) in cases {
            let d = try makeLargeDevice(makeConfig(profile: profile, maxPeers: n, rw: rw, out: out))
            let vs = d.vendorCap
            let st: UInt32 = n > 1024 ? 0x2000 : 0x1000
            #expect(d.cfg32(vs + 4) == st)
            #expect(d.cfg64(vs + 8) == rw)
            #expect(d.cfg64(vs + 0x10) == out)
        }
    }

    @Test("CAP-VS-9: every other vendor capability byte is read-only", arguments: allProfiles)
    func vendorReadOnly(profile: String) throws {
        let (_, d) = try makeDevice(makeConfig(profile: profile, rw: 0x3000, out: 0x1000))
        let vs = d.vendorCap
        let len = Int(d.cfg8(vs + 2))
        let before = (0..<len).map { d.cfg8(vs + $0) }
        for off in stride(from: 0, to: len, by: 4) { d.configWrite(offset: vs + off, size: 4, value: 0xFFFF_FFFF) }
        for off in 0..<len where off != 3 {
            #expect(d.cfg8(vs + off) == before[off], "+0x\(String(off, radix: 16))")
        }
        #expect(d.cfg8(vs + 3) == 1)
        for off in stride(from: 0, to: len, by: 4) { d.configWrite(offset: vs + off, size: 4, value: 0) }
        for off in 0..<len { #expect(d.cfg8(vs + off) == before[off]) }
    }

    // MARK: MSI-X capability

    @Test("MSIX-CAP-1: MSI-X capability 11h exactly in MSI-X mode")
    func msixPresent() throws {
        for p in allProfiles {
            let (_, d) = try makeDevice(makeConfig(profile: p))
            let off = p == "qemu-rfc" ? 0x40 : 0x60
            #expect(d.cfg8(off) == 0x11, "\(p)")
        }
        for p in ["spec", "jailhouse"] {
            let (_, d) = try makeDevice(makeConfig(profile: p, interrupts: .intx(pin: 1)))
            #expect(d.msixCap == nil)
            // No capability in the chain is MSI-X: walk it from the Capabilities Pointer.
            var chain: [UInt8] = []
            var at = Int(d.cfg8(0x34))
            while at != 0, chain.count < 48 { chain.append(UInt8(d.cfg8(at))); at = Int(d.cfg8(at + 1)) }
            #expect(chain == [0x09], "\(p): capability IDs in the chain \(chain)")
            #expect(d.cfg8(0x60) == 0)
            #expect(d.cfg8(d.vendorCap + 1) == 0)
        }
    }

    @Test("MSIX-CAP-2: Message Control bits", arguments: allProfiles)
    func messageControl(profile: String) throws {
        for v in [1, 7, 16] {
            let (_, d) = try makeDevice(makeConfig(profile: profile, vectors: v))
            let mc = d.msixCap! + 2
            #expect(d.cfg16(mc) == UInt32(v - 1))
            d.configWrite(offset: mc, size: 2, value: 0xFFFF)
            #expect(d.cfg16(mc) == 0xC000 | UInt32(v - 1))
            d.configWrite(offset: mc, size: 2, value: 0x4000)
            #expect(d.cfg16(mc) == 0x4000 | UInt32(v - 1))
            d.configWrite(offset: mc, size: 2, value: 0x8000)
            #expect(d.cfg16(mc) == 0x8000 | UInt32(v - 1))
            d.configWrite(offset: mc, size: 2, value: 0x3FFF)
            #expect(d.cfg16(mc) == UInt32(v - 1))
        }
        if profile != "jailhouse" {
            let (_, d) = try makeDevice(makeConfig(profile: profile, vectors: 1024))
            #expect(d.cfg16(d.msixCap! + 2) == 0x3FF)
        }
    }

    @Test("MSIX-CAP-3, MSIX-CAP-4: table/PBA offsets and BAR1 layout per profile")
    func tableAndPBA() throws {
        for p in allProfiles {
            for v in [1, 16, 100, 200, 1024] {
                if p == "jailhouse" && v > 16 { continue }
                let (_, d) = try makeDevice(makeConfig(profile: p, vectors: v))
                let mx = d.msixCap!
                let pbaOffset: UInt64 = p == "jailhouse" ? 0x100 : UInt64(max(0x800, 16 * v))
                let pbaSize = UInt64(8 * ((v + 63) / 64))
                let barSize: UInt64 = p == "jailhouse" ? 0x200 : pow2ceil(max(0x1000, pbaOffset + pbaSize))
                #expect(d.cfg32(mx + 4) == 0x0000_0001)
                #expect(d.cfg32(mx + 8) == UInt32(pbaOffset) | 1, "\(p) V=\(v)")
                #expect(d.layout.bar(.msix)?.size == barSize, "\(p) V=\(v)")
                d.configWrite(offset: mx + 4, size: 4, value: 0xFFFF_FFF0)
                d.configWrite(offset: mx + 8, size: 4, value: 0xFFFF_FFF0)
                #expect(d.cfg32(mx + 4) == 1)
                #expect(d.cfg32(mx + 8) == UInt32(pbaOffset) | 1)
                d.configWrite(offset: 0x14, size: 4, value: 0xFFFF_FFFF)
                #expect(d.cfg32(0x14) == UInt32(truncatingIfNeeded: ~(barSize - 1)))
                // table at 0: entry v-1's data is reachable at 16(v-1)+8
                d.barWrite(1, offset: UInt64(16 * (v - 1) + 8), size: 4, value: 0xABCD)
                #expect(d.barRead(1, offset: UInt64(16 * (v - 1) + 8), size: 4) == 0xABCD)
                // PBA reachable without a violation (writing the read-only offsets and reading a
                // PBA without pending bits are ineffective accesses, not violations)
                _ = d.barRead(1, offset: pbaOffset, size: 8)
                #expect(d.findings.filter { $0.kind == .violation }.isEmpty, "\(p) V=\(v): \(d.findings)")
            }
        }
    }

    // MARK: MSI-X table

    @Test("MSIX-TBL-1, MSIX-TBL-2: entry fields", arguments: allProfiles)
    func entryFields(profile: String) throws {
        let (_, d) = try makeDevice(makeConfig(profile: profile, vectors: 2))
        let e: UInt64 = 16
        d.barWrite(1, offset: e, size: 4, value: 0xFEE0_1003)
        d.barWrite(1, offset: e + 4, size: 4, value: 0x1234_5678)
        d.barWrite(1, offset: e + 8, size: 4, value: 0xDEAD_BEEF)
        d.barWrite(1, offset: e + 12, size: 4, value: 0xFFFF_FFFE)
        #expect(d.barRead(1, offset: e, size: 4) == 0xFEE0_1000)
        #expect(d.barRead(1, offset: e + 4, size: 4) == 0x1234_5678)
        #expect(d.barRead(1, offset: e + 8, size: 4) == 0xDEAD_BEEF)
        #expect(d.barRead(1, offset: e + 12, size: 4) == 0)
        d.barWrite(1, offset: e + 12, size: 4, value: 0xFFFF_FFFF)
        #expect(d.barRead(1, offset: e + 12, size: 4) == 1)
        // entry 0 untouched
        #expect(d.barRead(1, offset: 0, size: 8) == 0)
        #expect(d.barRead(1, offset: 8, size: 8) == 0x1_0000_0000)
        #expect(d.findings.isEmpty)
    }

    @Test("MSIX-TBL-3: entries masked and zero at construction", arguments: allProfiles)
    func entriesAtConstruction(profile: String) throws {
        let (_, d) = try makeDevice(makeConfig(profile: profile, vectors: 16))
        for v in 0..<16 {
            let o = UInt64(16 * v)
            #expect(d.barRead(1, offset: o, size: 4) == 0)
            #expect(d.barRead(1, offset: o + 4, size: 4) == 0)
            #expect(d.barRead(1, offset: o + 8, size: 4) == 0)
            #expect(d.barRead(1, offset: o + 12, size: 4) == 1)
        }
    }

    @Test("MSIX-TBL-4: table/PBA access sizes; others are violations", arguments: allProfiles)
    func accessSizes(profile: String) throws {
        let (_, d) = try makeDevice(makeConfig(profile: profile, vectors: 2))
        // 8-byte write = two dwords, lower address first
        d.barWrite(1, offset: 0, size: 8, value: 0x0000_0001_FEE0_0004)
        #expect(d.barRead(1, offset: 0, size: 4) == 0xFEE0_0004)
        #expect(d.barRead(1, offset: 4, size: 4) == 1)
        #expect(d.barRead(1, offset: 0, size: 8) == 0x0000_0001_FEE0_0004)
        d.barWrite(1, offset: 8, size: 8, value: 0x0000_0000_0000_0042)
        #expect(d.barRead(1, offset: 8, size: 4) == 0x42)
        #expect(d.barRead(1, offset: 12, size: 4) == 0)
        #expect(d.findings.isEmpty)
        // invalid: 1, 2 bytes, misaligned 4 and 8
        #expect(d.barRead(1, offset: 0, size: 1) == 0)
        #expect(d.barRead(1, offset: 0, size: 2) == 0)
        #expect(d.barRead(1, offset: 2, size: 4) == 0)
        #expect(d.barRead(1, offset: 4, size: 8) == 0)
        d.barWrite(1, offset: 8, size: 1, value: 0xFF)
        d.barWrite(1, offset: 8, size: 2, value: 0xFFFF)
        d.barWrite(1, offset: 10, size: 4, value: 0xFFFF_FFFF)
        d.barWrite(1, offset: 12, size: 8, value: 0)
        #expect(d.barRead(1, offset: 8, size: 4) == 0x42)
        #expect(d.barRead(1, offset: 12, size: 4) == 0)
        #expect(d.findingIDs == Array(repeating: "MSIX-TBL-4", count: 8))
    }

    @Test("MSIX-TBL-5: BAR1 bytes outside table and PBA read 0, ignore writes", arguments: allProfiles)
    func unusedBAR1(profile: String) throws {
        let (_, d) = try makeDevice(makeConfig(profile: profile, vectors: 2))
        let pba = UInt64(d.layout.msixPBAOffset)
        let size = d.layout.bar(.msix)!.size
        for off in [UInt64(0x20), 0x40, pba - 4, pba + 8, size - 4] {
            d.barWrite(1, offset: off, size: 4, value: 0xFFFF_FFFF)
            #expect(d.barRead(1, offset: off, size: 4) == 0, "0x\(String(off, radix: 16))")
        }
        // the table itself is unchanged
        #expect(d.barRead(1, offset: 0x1C, size: 4) == 1)
        // driver checking: allowed, but reported as ineffective accesses
        #expect(d.findings.count == 10)
        #expect(d.findings.allSatisfy { $0.requirement == "MSIX-TBL-5" && $0.kind == .ineffective })
    }

    @Test("MSIX-TBL-6: message needs Enable, no function mask, no vector mask, Bus Master", arguments: allProfiles)
    func messageConditions(profile: String) throws {
        let rig = try makeRig(profile: profile, vectors: 2)
        let d = rig[0], s = rig.sinks[0]
        d.driverEnableMSIX()
        let mc = d.msixCap! + 2
        func ring() { rig[1].ring(0, vector: 1) }
        ring()
        #expect(s.events == [d.expectedMessage(1)])
        s.clear()
        // Enable 0
        d.configWrite(offset: mc, size: 2, value: 0x0000); ring(); #expect(s.events.isEmpty)
        // Function Mask
        d.configWrite(offset: mc, size: 2, value: 0xC000); ring(); #expect(s.events.isEmpty || profile == "qemu-rfc")
        if profile == "qemu-rfc" { #expect(s.events.isEmpty) }
        d.configWrite(offset: mc, size: 2, value: 0x8000)
        // Clearing Function Mask: qemu-rfc sends the message it latched (MSIX-PBA-3); the
        // others dropped it (MSIX-PBA-1).
        #expect(s.events == (profile == "qemu-rfc" ? [d.expectedMessage(1)] : []), "\(profile)")
        s.clear()
        #expect(d.barRead(1, offset: UInt64(d.layout.msixPBAOffset), size: 4) == 0)
        // vector mask
        d.barWrite(1, offset: 16 + 12, size: 4, value: 1); ring()
        #expect(s.events.isEmpty)
        d.barWrite(1, offset: 16 + 12, size: 4, value: 0)
        s.clear()
        // Bus Master 0
        d.configWrite(offset: 0x04, size: 2, value: 0x2); ring(); #expect(s.events.isEmpty)
        d.configWrite(offset: 0x04, size: 2, value: 0x6); ring()
        #expect(s.events == [d.expectedMessage(1)])
    }

    @Test("MSIX-TBL-7: message is entry data written to Upper·2^32 + Address, contents at send time", arguments: allProfiles)
    func messageContents(profile: String) throws {
        let rig = try makeRig(profile: profile, vectors: 3)
        let d = rig[0], s = rig.sinks[0]
        d.driverEnableMSIX()
        d.barWrite(1, offset: 32, size: 4, value: 0xFEE0_F00C)
        d.barWrite(1, offset: 36, size: 4, value: 0x0000_00AB)
        d.barWrite(1, offset: 40, size: 4, value: 0x1357_9BDF)
        rig[1].ring(0, vector: 2)
        #expect(s.events == [.msix(vector: 2, address: 0xAB_FEE0_F00C, data: 0x1357_9BDF)])
        d.barWrite(1, offset: 40, size: 4, value: 0x2468)
        rig[1].ring(0, vector: 2)
        #expect(s.events.last == .msix(vector: 2, address: 0xAB_FEE0_F00C, data: 0x2468))
    }

    // MARK: PBA

    @Test("MSIX-PBA-1: spec/jailhouse PBA reads 0, masked events discarded", arguments: ["spec", "jailhouse"])
    func pbaDrop(profile: String) throws {
        let rig = try makeRig(profile: profile, vectors: 2)
        let d = rig[0], s = rig.sinks[0]
        d.driverEnableMSIX(unmask: false)
        let pba = UInt64(d.layout.msixPBAOffset)
        rig[1].ring(0, vector: 0)
        rig[1].ring(0, vector: 1)
        #expect(d.barRead(1, offset: pba, size: 4) == 0)
        #expect(d.barRead(1, offset: pba, size: 8) == 0)
        #expect(d.statistics.droppedMasked == 2)
        d.barWrite(1, offset: 12, size: 4, value: 0)
        d.barWrite(1, offset: 28, size: 4, value: 0)
        #expect(s.events.isEmpty, "discarded events are not sent on unmask")
        // function mask
        d.configWrite(offset: d.msixCap! + 2, size: 2, value: 0xC000)
        rig[1].ring(0, vector: 1)
        d.configWrite(offset: d.msixCap! + 2, size: 2, value: 0x8000)
        #expect(s.events.isEmpty)
        #expect(d.barRead(1, offset: pba, size: 4) == 0)
    }

    @Test("MSIX-PBA-2: PBA writes ignored", arguments: allProfiles)
    func pbaWrites(profile: String) throws {
        let rig = try makeRig(profile: profile, vectors: 2)
        let d = rig[0]
        d.driverEnableMSIX(unmask: false)
        let pba = UInt64(d.layout.msixPBAOffset)
        rig[1].ring(0, vector: 1)
        let before = d.barRead(1, offset: pba, size: 4)
        #expect(before == (profile == "qemu-rfc" ? 0b10 : 0))
        d.barWrite(1, offset: pba, size: 4, value: 0xFFFF_FFFF)
        #expect(d.barRead(1, offset: pba, size: 4) == before)
        d.barWrite(1, offset: pba, size: 4, value: 0)
        #expect(d.barRead(1, offset: pba, size: 4) == before)
        d.barWrite(1, offset: pba, size: 8, value: 0)
        #expect(d.barRead(1, offset: pba, size: 4) == before)
        #expect(d.findingIDs.filter { $0 != "MSIX-PBA-1" } == Array(repeating: "MSIX-PBA-2", count: 3))
        #expect(d.findings.allSatisfy { $0.kind == .ineffective })
    }

    @Test("MSIX-PBA-3: qemu-rfc latches masked events and sends on unmask")
    func pbaLatch() throws {
        let rig = try makeRig(profile: "qemu-rfc", vectors: 3)
        let d = rig[0], s = rig.sinks[0]
        d.driverEnableMSIX(unmask: false)
        let pba = UInt64(d.layout.msixPBAOffset)
        rig[1].ring(0, vector: 2)
        rig[1].ring(0, vector: 0)
        #expect(d.barRead(1, offset: pba, size: 4) == 0b101)
        #expect(d.barRead(1, offset: pba, size: 8) == 0b101)
        #expect(s.events.isEmpty)
        // reprogram entry 2 while pending: the message uses the contents at send time
        d.barWrite(1, offset: 40, size: 4, value: 0x77)
        d.barWrite(1, offset: 44, size: 4, value: 0)
        #expect(s.events == [.msix(vector: 2, address: IvshmemDevice.testAddress(0), data: 0x77)])
        #expect(d.barRead(1, offset: pba, size: 4) == 0b001)
        // function mask holds vector 0 even when its entry is unmasked
        d.configWrite(offset: d.msixCap! + 2, size: 2, value: 0xC000)
        d.barWrite(1, offset: 12, size: 4, value: 0)
        #expect(s.events.count == 1)
        #expect(d.barRead(1, offset: pba, size: 4) == 0b001)
        d.configWrite(offset: d.msixCap! + 2, size: 2, value: 0x8000)
        #expect(s.events.last == d.expectedMessage(0))
        #expect(d.barRead(1, offset: pba, size: 4) == 0)
        // function-masked event with entry unmasked latches too
        d.configWrite(offset: d.msixCap! + 2, size: 2, value: 0xC000)
        rig[1].ring(0, vector: 0)
        #expect(d.barRead(1, offset: pba, size: 4) == 0b001)
        // unmask with Bus Master off: bit cleared, no message
        d.configWrite(offset: 0x04, size: 2, value: 0x2)
        d.configWrite(offset: d.msixCap! + 2, size: 2, value: 0x8000)
        #expect(d.barRead(1, offset: pba, size: 4) == 0)
        #expect(s.events.count == 2)
    }

    @Test("MSIX-PBA-4: qemu-rfc sets no pending bit while MSI-X disabled")
    func pbaDisabled() throws {
        let rig = try makeRig(profile: "qemu-rfc", vectors: 2)
        let d = rig[0], s = rig.sinks[0]
        d.driverEnableMSIX(unmask: false)
        d.configWrite(offset: d.msixCap! + 2, size: 2, value: 0x0000)
        rig[1].ring(0, vector: 1)
        d.configWrite(offset: d.msixCap! + 2, size: 2, value: 0x8000)
        #expect(d.barRead(1, offset: UInt64(d.layout.msixPBAOffset), size: 4) == 0)
        d.barWrite(1, offset: 28, size: 4, value: 0)
        #expect(s.events.isEmpty)
    }
}
