import IvshmemModel
import IvshmemSpec
import Testing

@Suite("Shared memory")
struct SharedMemoryTests {

    func sections(_ d: IvshmemDevice) -> [(String, UInt64, UInt64)] {
        d.sharedMemoryLayout.sections.map { ($0.name, $0.offset, $0.size) }
    }

    @Test("SHM-LAYOUT-1, SHM-LAYOUT-2, SHM-LAYOUT-3, SHM-LAYOUT-4: sections in order, contiguous", arguments: allProfiles)
    func layoutOrder(profile: String) throws {
        let (_, d) = try makeDevice(makeConfig(profile: profile, maxPeers: 3, rw: 0x3000, out: 0x2000))
        let g = d.layout.geometry
        #expect(g.stateTableSize == 0x1000)
        #expect(g.rwSectionOffset == 0x1000)
        for i in UInt64(0)..<3 { #expect(g.outputSectionOffset(peer: i) == 0x1000 + 0x3000 + i * 0x2000) }
        let s = d.sharedMemoryLayout.sections
        #expect(s.map(\.offset) == [0, 0x1000, 0x4000, 0x6000, 0x8000])
        #expect(s.map(\.size) == [0x1000, 0x3000, 0x2000, 0x2000, 0x2000])
        #expect(s.map(\.ownerPeer) == [nil, nil, 0, 1, 2])
        for (a, b) in zip(s, s.dropFirst()) { #expect(a.offset + a.size == b.offset) }
        // observable through the peers' views: a byte written by peer 1 into its output section
        // appears at ST + RW + 1·OUT in the shared memory.
        let rig = try makeRig(profile: profile, peers: 3, rw: 0x3000, out: 0x2000)
        rig[1].sharedMemoryStore(offset: 0x6000, size: 4, value: 0xA1A2A3A4)
        rig[2].sharedMemoryStore(offset: 0x1000, size: 4, value: 0xB1B2B3B4)
        #expect(rig.fabric.sharedMemory.base.load(fromByteOffset: 0x6000, as: UInt32.self) == 0xA1A2A3A4)
        #expect(rig.fabric.sharedMemory.base.load(fromByteOffset: 0x1000, as: UInt32.self) == 0xB1B2B3B4)
        #expect(rig[0].sharedMemoryLoad(offset: 0x6000, size: 4) == 0xA1A2A3A4)
        rig[1].writeRegister(Reg.state, 9)
        #expect(rig.fabric.sharedMemory.base.load(fromByteOffset: 4, as: UInt32.self) == 9)
    }

    @Test("SHM-LAYOUT-5, DEV-CFG-4: sizes must be page multiples")
    func pageMultiples() throws {
        for (rw, out, param) in [(UInt64(0x800), UInt64(0), "rwSectionSize"), (0x1000, 0x1800, "outputSectionSize"), (0x1001, 0x1000, "rwSectionSize")] {
            let e = #expect(throws: DeviceConfigurationError.self) { try makeDevice(makeConfig(rw: rw, out: out)) }
            #expect(e?.parameter == param)
        }
        var c = makeConfig()
        c.stateTableSize = 0x1800
        let e = #expect(throws: DeviceConfigurationError.self) { try makeDevice(c) }
        #expect(e?.parameter == "stateTableSize")
        c.stateTableSize = 0x2000  // page multiple but not the formula
        let e2 = #expect(throws: DeviceConfigurationError.self) { try makeDevice(c) }
        #expect(e2?.parameter == "stateTableSize")
        c.stateTableSize = 0x1000
        _ = try makeDevice(c)
    }

    @Test("SHM-LAYOUT-6: RW and OUT may be 0 and take no space", arguments: allProfiles)
    func emptySections(profile: String) throws {
        let (_, a) = try makeDevice(makeConfig(profile: profile, rw: 0, out: 0))
        #expect(a.layout.geometry.totalSize == 0x1000)
        #expect(a.sharedMemoryLayout.sections.map(\.size) == [0x1000])
        let (_, b) = try makeDevice(makeConfig(profile: profile, rw: 0x2000, out: 0))
        #expect(b.layout.geometry.totalSize == 0x3000)
        #expect(b.sharedMemoryLayout.sections.count == 2)
        if profile != "qemu-rfc" {
            let (_, c) = try makeDevice(makeConfig(profile: profile, rw: 0, out: 0x1000))
            #expect(c.layout.geometry.totalSize == 0x3000)
            #expect(c.sharedMemoryLayout.sections.map(\.offset) == [0, 0x1000, 0x2000])
        }
    }

    @Test("SHM-LAYOUT-7, SHM-LAYOUT-8: ST = 1000h up to 1024 peers, else round_up(4·N, 1000h)")
    func stateTableSize() throws {
        let cases: [(UInt64, UInt64)] = [(2, 0x1000), (1023, 0x1000), (1024, 0x1000), (1025, 0x2000), (2048, 0x2000), (2049, 0x3000), (65536, 0x40000)]
        for (n, st) in cases {
            #expect(SharedMemoryGeometry.stateTableSize(maxPeers: n) == st)
            let (_, d) = try makeDevice(makeConfig(maxPeers: UInt32(n), rw: 0))
            #expect(d.layout.geometry.stateTableSize == st, "N=\(n)")
            #expect(d.layout.geometry.stateTableSize >= 4 * n)
            #expect(d.cfg32(d.vendorCap + 4) == UInt32(st))
        }
    }

    @Test("SHM-LAYOUT-9: exposed size is ST + RW + N·OUT", arguments: allProfiles)
    func totalSize(profile: String) throws {
        let rig = try makeRig(profile: profile, peers: 2, maxPeers: 3, rw: 0x2000, out: 0x1000)
        let total: UInt64 = 0x1000 + 0x2000 + 3 * 0x1000
        #expect(rig[0].layout.geometry.totalSize == total)
        #expect(rig.fabric.sharedMemory.size == Int(total))
        // last byte of the last output section is readable, the next one is outside
        #expect(rig[0].sharedMemoryLoad(offset: total - 1, size: 1) == 0)
        #expect(rig[0].findings.isEmpty)
        var buf = [UInt8](repeating: 0xEE, count: 2)
        let ok = buf.withUnsafeMutableBytes { rig[0].sharedMemoryRead(offset: total - 1, into: $0) }
        #expect(!ok)
        #expect(buf == [0, 0])
    }

    @Test("SHM-RW-1: every peer reads and writes the whole R/W section", arguments: allProfiles)
    func rwSection(profile: String) throws {
        let rig = try makeRig(profile: profile, peers: 3, rw: 0x2000, out: 0x1000)
        for (i, d) in rig.devices.enumerated() {
            for off in [UInt64(0x1000), 0x1FF8, 0x2FF8] {
                d.sharedMemoryStore(offset: off, size: 8, value: UInt64(i + 1) << 32 | off)
                for other in rig.devices {
                    #expect(other.sharedMemoryLoad(offset: off, size: 8) == UInt64(i + 1) << 32 | off)
                }
            }
            #expect(d.findings.isEmpty)
        }
    }

    @Test("SHM-OUT-1, SHM-OUT-2: output section writable by its owner only", arguments: allProfiles)
    func outputSections(profile: String) throws {
        let rig = try makeRig(profile: profile, peers: 3, rw: 0x1000, out: 0x1000)
        let outBase: UInt64 = 0x2000
        for (i, d) in rig.devices.enumerated() {
            let own = outBase + UInt64(i) * 0x1000
            d.sharedMemoryStore(offset: own + 0x10, size: 4, value: UInt64(0x100 + i))
            #expect(d.findings.isEmpty)
        }
        for d in rig.devices {
            for j in 0..<3 {
                #expect(d.sharedMemoryLoad(offset: outBase + UInt64(j) * 0x1000 + 0x10, size: 4) == UInt64(0x100 + j))
            }
        }
        // foreign write: no effect, violation
        rig[0].sharedMemoryStore(offset: outBase + 0x1000 + 0x10, size: 4, value: 0xBAD)
        #expect(rig[1].sharedMemoryLoad(offset: outBase + 0x1000 + 0x10, size: 4) == 0x101)
        #expect(rig[0].findingIDs == ["SHM-OUT-2"])
        // a write straddling the own and a foreign section changes nothing
        rig[2].clearFindings()
        var bytes: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8]
        let ok = bytes.withUnsafeBytes { rig[1].sharedMemoryWrite(offset: outBase + 0x2000 - 4, from: $0) }
        #expect(!ok)
        #expect(rig[1].sharedMemoryLoad(offset: outBase + 0x2000 - 4, size: 4) == 0)
        #expect(rig[1].findingIDs == ["SHM-OUT-2"])
        bytes = []
    }

    @Test("SHM-BAR-1, SHM-BAR-4: BAR2 offset x is shared-memory offset x; 1/2/4/8-byte accesses", arguments: bar2Profiles)
    func bar2Window(profile: String) throws {
        let rig = try makeRig(profile: profile, peers: 2, rw: 0x2000, out: 0x1000)
        let mem = rig.fabric.sharedMemory.base
        for off in [UInt64(0x1000), 0x1003, 0x1FFF, 0x2FFD] {
            for size in [1, 2, 4, 8] where off + UInt64(size) <= 0x3000 {
                let value: UInt64 = size == 8 ? 0x0807_0605_0403_0201 : 0x0807_0605_0403_0201 & ((1 << UInt64(8 * size)) - 1)
                rig[0].barWrite(2, offset: off, size: size, value: value)
                #expect(rig[1].barRead(2, offset: off, size: size) == value, "off 0x\(String(off, radix: 16)) size \(size)")
                #expect(mem.load(fromByteOffset: Int(off), as: UInt8.self) == UInt8(truncatingIfNeeded: value))
            }
        }
        // state table via BAR2 offset 0
        rig[1].writeRegister(Reg.state, 0x55)
        #expect(rig[0].barRead(2, offset: 4, size: 4) == 0x55)
        #expect(rig[0].barRead(2, offset: 0, size: 8) == 0x55 << 32)
        // own output section (peer 1: 0x4000)
        rig[1].barWrite(2, offset: 0x4007, size: 1, value: 0x99)
        #expect(rig[0].barRead(2, offset: 0x4007, size: 1) == 0x99)
        #expect(rig[0].findings.isEmpty && rig[1].findings.isEmpty)
    }

    @Test("SHM-BAR-2: BAR2 bytes beyond the total size read 0 and ignore writes", arguments: bar2Profiles)
    func bar2Tail(profile: String) throws {
        let rig = try makeRig(profile: profile, peers: 2, maxPeers: 3, rw: 0x1000, out: 0x1000)
        let d = rig[0]
        let total = d.layout.geometry.totalSize  // 5000h
        let size = d.layout.bar(.sharedMemory)!.size
        #expect(total == 0x5000 && size == 0x8000)
        for off in [total, total + 0x100, size - 8] {
            d.barWrite(2, offset: off, size: 8, value: .max)
            #expect(d.barRead(2, offset: off, size: 8) == 0)
            #expect(d.barRead(2, offset: off, size: 1) == 0)
        }
        #expect(d.findings.isEmpty, "the rounding gap is not a violation: \(d.findings)")
    }

    @Test("SHM-BAR-3: jailhouse shared memory at the Base Address, same rights, no BAR2")
    func jailhouseBase() throws {
        let rig = try makeRig(profile: "jailhouse", peers: 2, rw: 0x1000, out: 0x1000)
        let d = rig[0]
        #expect(d.layout.bar(.sharedMemory) == nil)
        #expect(d.cfg64(d.vendorCap + 0x18) == d.configuration.baseAddress)
        d.sharedMemoryStore(offset: 0x1000, size: 4, value: 0x1234)
        #expect(rig[1].sharedMemoryLoad(offset: 0x1000, size: 4) == 0x1234)
        d.sharedMemoryStore(offset: 0x3000, size: 4, value: 0xBAD)  // peer 1's output
        #expect(d.findingIDs == ["SHM-OUT-2"])
        // the platform-level part (Base Address routing, Command-independent) is in PlatformTests
    }

    @Test("SHM-BAR-5: qemu-rfc RW = 0 misplacement")
    func qemuMisplacement() throws {
        // N = 2, OUT = 2000h, ST = 1000h: max(ST, N·OUT) = 4000h, total = 5000h, BAR2 = 8000h
        let rig = try makeRig(profile: "qemu-rfc", peers: 2, rw: 0, out: 0x2000)
        let (d0, d1) = (rig[0], rig[1])
        let mem = rig.fabric.sharedMemory.base
        // peer 1's window [2000h, 4000h) writes shm offsets 2000h.. (not ST+1·OUT = 3000h)
        d1.barWrite(2, offset: 0x2000, size: 4, value: 0x1111)
        #expect(mem.load(fromByteOffset: 0x2000, as: UInt32.self) == 0x1111)
        #expect(d0.barRead(2, offset: 0x2000, size: 4) == 0x1111)
        d1.barWrite(2, offset: 0x3FFC, size: 4, value: 0x2222)
        #expect(mem.load(fromByteOffset: 0x3FFC, as: UInt32.self) == 0x2222)
        #expect(d1.findings.isEmpty)
        // peer 0's window [0, 2000h) covers the State Table
        d0.barWrite(2, offset: 0x8, size: 4, value: 0x3333)
        #expect(mem.load(fromByteOffset: 8, as: UInt32.self) == 0x3333)
        #expect(d1.barRead(2, offset: 0x8, size: 4) == 0x3333)
        #expect(d0.findings.isEmpty)
        // everything else below max(ST, N·OUT) is read-only
        d1.barWrite(2, offset: 0x0, size: 4, value: 0xBAD)
        d0.barWrite(2, offset: 0x2000, size: 4, value: 0xBAD)
        #expect(mem.load(fromByteOffset: 0, as: UInt32.self) == 0)
        #expect(mem.load(fromByteOffset: 0x2000, as: UInt32.self) == 0x1111)
        #expect(!d1.findings.isEmpty && !d0.findings.isEmpty)
        // from max(ST, N·OUT) on: read 0, writes ignored
        mem.storeBytes(of: 0xFFFF_FFFF, toByteOffset: 0x4000, as: UInt32.self)
        #expect(d0.barRead(2, offset: 0x4000, size: 4) == 0)
        d1.barWrite(2, offset: 0x4800, size: 4, value: 0x4444)
        #expect(mem.load(fromByteOffset: 0x4800, as: UInt32.self) == 0)
        #expect(d1.barRead(2, offset: 0x7FFC, size: 4) == 0)
        // the other profiles are not affected
        for p in ["spec", "jailhouse"] {
            let r = try makeRig(profile: p, peers: 2, rw: 0, out: 0x2000)
            r[1].sharedMemoryStore(offset: 0x3000, size: 4, value: 0x5555)  // ST + 1·OUT
            #expect(r.fabric.sharedMemory.base.load(fromByteOffset: 0x3000, as: UInt32.self) == 0x5555)
            r[0].sharedMemoryStore(offset: 0x8, size: 4, value: 0xBAD)
            #expect(r[0].findingIDs == ["SHM-ST-1"], "\(p)")
        }
    }

    // MARK: State Table

    @Test("SHM-ST-1: State Table read-only through the shared-memory view", arguments: allProfiles)
    func stateTableReadOnly(profile: String) throws {
        let rig = try makeRig(profile: profile)
        rig[0].writeRegister(Reg.state, 7)
        for (off, size) in [(UInt64(0), 4), (4, 4), (0, 1), (0xFF8, 8), (0x10, 2)] {
            rig[1].sharedMemoryStore(offset: off, size: size, value: 0xFFFF)
        }
        #expect(rig[1].stateTableEntry(0) == 7)
        #expect(rig[1].stateTableEntry(1) == 0)
        #expect(rig[1].sharedMemoryLoad(offset: 0x10, size: 4) == 0)
        #expect(rig[1].findingIDs == Array(repeating: "SHM-ST-1", count: 5))
        rig[0].sharedMemoryStore(offset: 0, size: 4, value: 0)  // own entry too
        #expect(rig[0].stateTableEntry(0) == 7)
        #expect(rig[0].findingIDs == ["SHM-ST-1"])
    }

    @Test("SHM-ST-2: entry i is the little-endian word at 4·i", arguments: allProfiles)
    func stateEntries(profile: String) throws {
        let rig = try makeRig(profile: profile, peers: 4)
        for (i, d) in rig.devices.enumerated() { d.writeRegister(Reg.state, 0xA0B0_C000 | UInt32(i)) }
        for i in 0..<4 {
            #expect(rig[0].sharedMemoryLoad(offset: UInt64(4 * i), size: 4) == UInt64(0xA0B0_C000 | UInt32(i)))
            #expect(rig[0].sharedMemoryLoad(offset: UInt64(4 * i), size: 1) == UInt64(i))
            #expect(rig[0].sharedMemoryLoad(offset: UInt64(4 * i + 3), size: 1) == 0xA0)
        }
    }

    @Test("SHM-ST-3: State Table all zeros when the link is created", arguments: allProfiles)
    func stateTableZero(profile: String) throws {
        let rig = try makeRig(profile: profile, peers: 2, maxPeers: 8, rw: 0x1000, out: 0x1000)
        #expect((0..<0x1000 / 8).allSatisfy { rig[0].sharedMemoryLoad(offset: UInt64($0 * 8), size: 8) == 0 })
    }

    @Test("SHM-ST-4: reset writes 0 into the own entry", arguments: allProfiles)
    func stateResetEntry(profile: String) throws {
        let rig = try makeRig(profile: profile, peers: 3)
        rig[0].writeRegister(Reg.state, 5)
        rig[1].writeRegister(Reg.state, 6)
        rig[1].reset()
        #expect(rig[2].stateTableEntry(1) == 0)
        #expect(rig[2].stateTableEntry(0) == 5)
    }

    @Test("SHM-ST-5: a detached peer's entry becomes 0", arguments: allProfiles)
    func stateDeparture(profile: String) throws {
        let rig = try makeRig(profile: profile, peers: 3)
        rig[2].writeRegister(Reg.state, 0xDEAD)
        rig[1].writeRegister(Reg.state, 0xBEEF)
        rig.fabric.removeDevice(id: 2)
        #expect(rig[0].stateTableEntry(2) == 0)
        #expect(rig[0].stateTableEntry(1) == 0xBEEF)
    }

    @Test("SHM-ST-6: bytes beyond 4·N stay 0", arguments: allProfiles)
    func stateTail(profile: String) throws {
        let rig = try makeRig(profile: profile, peers: 3, maxPeers: 3)
        for d in rig.devices { d.writeRegister(Reg.state, 0xFFFF_FFFF) }
        for d in rig.devices { d.sharedMemoryStore(offset: 12, size: 4, value: 1) }
        #expect((12..<0x1000).allSatisfy { rig[0].sharedMemoryLoad(offset: UInt64($0), size: 1) == 0 })
        // a doorbell naming target ≥ N does not write the table either
        rig[0].writeRegister(Reg.doorbell, 0x0003_0000)
        #expect(rig[0].sharedMemoryLoad(offset: 12, size: 4) == 0)
    }
}
