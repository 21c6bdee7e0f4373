import IvshmemModel
import IvshmemSpec
import Testing

@Suite("Configuration-space header")
struct ConfigHeaderTests {

    // MARK: identification

    @Test("CFG-ID-1, CFG-ID-2, CFG-ID-3, CFG-ID-4: identification registers", arguments: allProfiles)
    func identification(profile: String) throws {
        let (_, d) = try makeDevice(makeConfig(profile: profile))
        #expect(d.cfg16(0x00) == 0x110A)
        #expect(d.cfg16(0x02) == 0x4106)
        #expect(d.cfg32(0x00) == 0x4106_110A)
        #expect(d.cfg8(0x08) == 0x00)
        #expect(d.cfg8(0x0E) == 0x00)
        #expect(d.findings.isEmpty)
    }

    @Test("CFG-ID-5: subsystem IDs per profile")
    func subsystemIDs() throws {
        let expected: [String: (UInt32, UInt32)] = ["spec": (0x110A, 0x4106), "jailhouse": (0x110A, 0x4106), "qemu-rfc": (0x1AF4, 0x1100)]
        for p in allProfiles {
            let (_, d) = try makeDevice(makeConfig(profile: p))
            #expect(d.cfg16(0x2C) == expected[p]!.0, "\(p)")
            #expect(d.cfg16(0x2E) == expected[p]!.1, "\(p)")
            #expect(d.cfg32(0x2C) == expected[p]!.1 << 16 | expected[p]!.0, "\(p)")
        }
    }

    @Test("CFG-ID-6, CFG-CLASS-3: identification and class code read-only", arguments: allProfiles)
    func identificationReadOnly(profile: String) throws {
        let (_, d) = try makeDevice(makeConfig(profile: profile, protocolType: 0x4001))
        let before = (0..<0x40).map { d.cfg8($0) }
        for off in [0x00, 0x08, 0x0C, 0x2C] { d.configWrite(offset: off, size: 4, value: 0xFFFF_FFFF) }
        for off in [0x00, 0x02, 0x2C, 0x2E] { d.configWrite(offset: off, size: 2, value: 0x1234) }
        for off in [0x08, 0x09, 0x0A, 0x0B, 0x0E] { d.configWrite(offset: off, size: 1, value: 0x5A) }
        for off in [0x00, 0x01, 0x02, 0x03, 0x08, 0x09, 0x0A, 0x0B, 0x0E, 0x2C, 0x2D, 0x2E, 0x2F] {
            #expect(d.cfg8(off) == before[off], "byte 0x\(String(off, radix: 16))")
        }
        #expect(d.cfg32(0x08) == 0xFF40_0100)
        #expect(!d.findings.isEmpty && d.findings.allSatisfy { $0.kind == .ineffective && $0.requirement == "CFG-ACC-3" }, "writes to read-only registers are ineffective accesses, not violations: \(d.findings)")
    }

    // MARK: command

    @Test("CFG-CMD-1: Command resets to 0000h", arguments: allProfiles)
    func commandReset(profile: String) throws {
        let (_, d) = try makeDevice(makeConfig(profile: profile))
        #expect(d.cfg16(0x04) == 0)
        #expect(!d.memoryDecodeEnabled && !d.ioDecodeEnabled && !d.busMasterEnabled)
    }

    @Test("CFG-CMD-2, CFG-CMD-4, CFG-CMD-5, CFG-CMD-6: writable Command bits", arguments: allProfiles)
    func commandBits(profile: String) throws {
        let (_, d) = try makeDevice(makeConfig(profile: profile))
        d.configWrite(offset: 0x04, size: 2, value: 0xFFFF)
        #expect(d.cfg16(0x04) == 0x0406)
        #expect(d.memoryDecodeEnabled && d.busMasterEnabled && !d.ioDecodeEnabled)
        d.configWrite(offset: 0x04, size: 2, value: 0x0002)
        #expect(d.cfg16(0x04) == 0x0002)
        d.configWrite(offset: 0x04, size: 2, value: 0x0004)
        #expect(d.cfg16(0x04) == 0x0004)
        d.configWrite(offset: 0x04, size: 2, value: 0x0400)
        #expect(d.cfg16(0x04) == 0x0400)
        d.configWrite(offset: 0x04, size: 2, value: 0xFBF8)
        #expect(d.cfg16(0x04) == 0x0000)
        #expect(d.findings.isEmpty)
    }

    @Test("CFG-CMD-3: I/O Space bit writable only with an I/O BAR0")
    func commandIOBit() throws {
        let (_, io) = try makeDevice(makeConfig(registerSpace: .io))
        io.configWrite(offset: 0x04, size: 2, value: 0x0001)
        #expect(io.cfg16(0x04) == 0x0001)
        #expect(io.ioDecodeEnabled)
        io.configWrite(offset: 0x04, size: 2, value: 0x0000)
        #expect(io.cfg16(0x04) == 0x0000)
        for p in allProfiles {
            let (_, mem) = try makeDevice(makeConfig(profile: p))
            mem.configWrite(offset: 0x04, size: 2, value: 0x0001)
            #expect(mem.cfg16(0x04) == 0, "\(p)")
            #expect(!mem.ioDecodeEnabled)
        }
    }

    // MARK: status

    @Test("CFG-STS-1, CFG-STS-2: Status reads 0010h, writes change nothing", arguments: allProfiles)
    func status(profile: String) throws {
        let (_, d) = try makeDevice(makeConfig(profile: profile))
        #expect(d.cfg16(0x06) == 0x0010)
        d.configWrite(offset: 0x06, size: 2, value: 0xFFFF)
        #expect(d.cfg16(0x06) == 0x0010)
        d.configWrite(offset: 0x04, size: 4, value: 0xFFFF_0006)
        #expect(d.cfg32(0x04) == 0x0010_0006)
        d.configWrite(offset: 0x06, size: 2, value: 0x0000)
        #expect(d.cfg16(0x06) == 0x0010)
        #expect(d.findings.allSatisfy { $0.kind == .ineffective && $0.requirement == "CFG-ACC-3" }, "\(d.findings)")
    }

    @Test("CFG-STS-3: Interrupt Status never set in INTx mode", arguments: ["spec", "jailhouse"])
    func statusInterruptBit(profile: String) throws {
        let rig = try makeRig(profile: profile, interrupts: .intx(pin: 1))
        rig[0].driverEnableINTx()
        rig[1].ring(0, vector: 0)
        #expect(rig.sinks[0].edges == [.intx(pin: 1)])
        #expect(rig[0].cfg16(0x06) & 0x8 == 0)
        #expect(rig[0].cfg16(0x06) == 0x0010)
        rig[0].configWrite(offset: 0x04, size: 2, value: 0x0402)
        rig[0].writeRegister(Reg.interruptControl, 1)
        rig[1].ring(0, vector: 0)
        #expect(rig[0].cfg16(0x06) == 0x0010)
    }

    // MARK: class code

    @Test("CFG-CLASS-1, CFG-CLASS-2: class code holds FFh and the protocol", arguments: [UInt16(0x0000), 0x0001, 0x4001, 0x8003, 0xC003, 0xFFFF])
    func classCode(proto: UInt16) throws {
        for p in allProfiles {
            let (_, d) = try makeDevice(makeConfig(profile: p, protocolType: proto))
            #expect(d.cfg8(0x0B) == 0xFF)
            #expect(d.cfg8(0x09) == UInt32(proto & 0xFF))
            #expect(d.cfg8(0x0A) == UInt32(proto >> 8))
            #expect(d.cfg32(0x08) == 0xFF00_0000 | UInt32(proto) << 8)
        }
    }

    // MARK: BARs

    @Test("CFG-BAR-1, CFG-BAR-5: BAR0 memory (1000h) and I/O (100h) sizing")
    func bar0() throws {
        for p in allProfiles {
            let (_, d) = try makeDevice(makeConfig(profile: p))
            #expect(d.cfg32(0x10) == 0x0000_0000)
            d.configWrite(offset: 0x10, size: 4, value: 0xFFFF_FFFF)
            #expect(d.cfg32(0x10) == 0xFFFF_F000, "\(p)")
            d.configWrite(offset: 0x10, size: 4, value: 0xFEB0_1234)
            #expect(d.cfg32(0x10) == 0xFEB0_1000)
            #expect(d.programmedAddress(bar: 0) == 0xFEB0_1000)
        }
        let (_, io) = try makeDevice(makeConfig(registerSpace: .io))
        #expect(io.cfg32(0x10) == 0x0000_0001)
        io.configWrite(offset: 0x10, size: 4, value: 0xFFFF_FFFF)
        #expect(io.cfg32(0x10) == 0xFFFF_FF01)
        io.configWrite(offset: 0x10, size: 4, value: 0xC123)
        #expect(io.cfg32(0x10) == 0xC101)
    }

    @Test("CFG-BAR-2: BAR1 exists exactly with MSI-X", arguments: allProfiles)
    func bar1(profile: String) throws {
        let (_, d) = try makeDevice(makeConfig(profile: profile, vectors: 4))
        d.configWrite(offset: 0x14, size: 4, value: 0xFFFF_FFFF)
        let size: UInt32 = profile == "jailhouse" ? 0x200 : 0x1000
        #expect(d.cfg32(0x14) == ~(size - 1))
        #expect(d.layout.bar(.msix)?.size == UInt64(size))
        if profile != "qemu-rfc" {
            let (_, intx) = try makeDevice(makeConfig(profile: profile, interrupts: .intx(pin: 1)))
            intx.configWrite(offset: 0x14, size: 4, value: 0xFFFF_FFFF)
            #expect(intx.cfg32(0x14) == 0)
            #expect(intx.layout.bar(.msix) == nil)
        }
    }

    @Test("CFG-BAR-3, CFG-BAR-6, CFG-BAR-9: BAR2/3 64-bit prefetchable, size pow2ceil(max(total, 1000h))", arguments: bar2Profiles)
    func bar2(profile: String) throws {
        // total = 1000h + 3000h + 2·2000h = 8000h
        let cases: [(UInt32, UInt64, UInt64)] = [(2, 0x3000, 0x2000), (2, 0, 0), (4, 0x5_0000, 0x1000), (2, 0x1_0000_0000, 0)]
        for (n, rw, out) in cases {
            let d = try makeLargeDevice(makeConfig(profile: profile, maxPeers: n, rw: rw, out: out))
            let total = d.layout.geometry.totalSize
            let size = pow2ceil(max(total, 0x1000))
            #expect(d.layout.bar(.sharedMemory)?.size == size)
            #expect(d.cfg32(0x18) == 0x0000_000C)
            #expect(d.cfg32(0x1C) == 0)
            d.configWrite(offset: 0x18, size: 4, value: 0xFFFF_FFFF)
            d.configWrite(offset: 0x1C, size: 4, value: 0xFFFF_FFFF)
            let mask = ~(size - 1)
            #expect(d.cfg32(0x18) == UInt32(truncatingIfNeeded: mask) | 0xC, "total 0x\(String(total, radix: 16))")
            #expect(d.cfg32(0x1C) == UInt32(truncatingIfNeeded: mask >> 32))
            d.configWrite(offset: 0x18, size: 4, value: 0)
            d.configWrite(offset: 0x1C, size: 4, value: 0x80)
            #expect(d.cfg32(0x18) == 0xC)
            #expect(d.programmedAddress(bar: 2) == 0x80_0000_0000)
        }
    }

    @Test("CFG-BAR-4, CFG-BAR-7: unimplemented BARs and the ROM BAR read 0")
    func unimplementedBARs() throws {
        for p in allProfiles {
            let (_, d) = try makeDevice(makeConfig(profile: p))
            var offsets = [0x20, 0x24, 0x30]
            if p == "jailhouse" { offsets += [0x18, 0x1C] }
            for off in offsets {
                #expect(d.cfg32(off) == 0)
                d.configWrite(offset: off, size: 4, value: 0xFFFF_FFFF)
                #expect(d.cfg32(off) == 0, "\(p) 0x\(String(off, radix: 16))")
            }
            #expect(d.layout.bar(.sharedMemory) == nil || p != "jailhouse")
        }
    }

    @Test("CFG-BAR-8: BAR reset values")
    func barResetValues() throws {
        for p in allProfiles {
            let (_, d) = try makeDevice(makeConfig(profile: p))
            #expect(d.cfg32(0x10) == 0)
            #expect(d.cfg32(0x14) == 0)
            #expect(d.cfg32(0x18) == (p == "jailhouse" ? 0 : 0xC))
            #expect(d.cfg32(0x1C) == 0)
        }
        let (_, io) = try makeDevice(makeConfig(registerSpace: .io))
        #expect(io.cfg32(0x10) == 1)
    }

    // MARK: capabilities

    @Test("CFG-CAP-1, CFG-CAP-2, CFG-CAP-3: capability chain per profile and mode")
    func capabilityChain() throws {
        func chain(_ d: IvshmemDevice) -> [(Int, UInt32)] {
            var out: [(Int, UInt32)] = []
            var p = Int(d.cfg8(0x34))
            while p != 0, out.count < 10 {
                out.append((p, d.cfg8(p)))
                p = Int(d.cfg8(p + 1))
            }
            return out
        }
        let expect: [(String, InterruptMode, UInt32, [(Int, UInt32)])] = [
            ("spec", .msix, 0x40, [(0x40, 0x09), (0x60, 0x11)]),
            ("jailhouse", .msix, 0x40, [(0x40, 0x09), (0x60, 0x11)]),
            ("qemu-rfc", .msix, 0x4C, [(0x4C, 0x09), (0x40, 0x11)]),
            ("spec", .intx(pin: 1), 0x40, [(0x40, 0x09)]),
            ("jailhouse", .intx(pin: 2), 0x40, [(0x40, 0x09)]),
        ]
        for (p, mode, ptr, caps) in expect {
            let (_, d) = try makeDevice(makeConfig(profile: p, interrupts: mode))
            #expect(d.cfg8(0x34) == ptr, "\(p)")
            let got = chain(d)
            #expect(got.map(\.0) == caps.map(\.0), "\(p) \(mode)")
            #expect(got.map(\.1) == caps.map(\.1), "\(p) \(mode)")
            #expect(d.cfg16(0x06) & 0x10 != 0)
        }
    }

    @Test("CFG-CAP-4: capability pointer and headers read-only", arguments: allProfiles)
    func capabilityHeadersReadOnly(profile: String) throws {
        let (_, d) = try makeDevice(makeConfig(profile: profile))
        let before = (0..<256).map { d.cfg8($0) }
        d.configWrite(offset: 0x34, size: 1, value: 0x80)
        d.configWrite(offset: 0x34, size: 4, value: 0xFFFF_FFFF)
        let vs = d.vendorCap, mx = d.msixCap!
        d.configWrite(offset: vs, size: 2, value: 0xFFFF)
        d.configWrite(offset: vs + 2, size: 1, value: 0xFF)
        d.configWrite(offset: mx, size: 2, value: 0xFFFF)
        for off in [0x34, vs, vs + 1, vs + 2, mx, mx + 1] {
            #expect(d.cfg8(off) == before[off], "0x\(String(off, radix: 16))")
        }
    }

    // MARK: interrupt line/pin

    @Test("CFG-INT-1, CFG-INT-4: MSI-X mode Interrupt Pin 00h, read-only", arguments: allProfiles)
    func interruptPinMSIX(profile: String) throws {
        let (_, d) = try makeDevice(makeConfig(profile: profile))
        #expect(d.cfg8(0x3D) == 0)
        d.configWrite(offset: 0x3D, size: 1, value: 0x02)
        #expect(d.cfg8(0x3D) == 0)
    }

    @Test("CFG-INT-2, CFG-INT-4: INTx mode Interrupt Pin 01h–04h, read-only", arguments: ["spec", "jailhouse"])
    func interruptPinINTx(profile: String) throws {
        // spec: the constructed value (default 01h). jailhouse: (device number mod 4) + 1 is
        // not derived by the model; the provider passes that value as the configured pin.
        for pin in UInt8(1)...4 {
            let (_, d) = try makeDevice(makeConfig(profile: profile, interrupts: .intx(pin: pin)))
            #expect(d.cfg8(0x3D) == UInt32(pin))
            d.configWrite(offset: 0x3C, size: 2, value: 0x0000)
            #expect(d.cfg8(0x3D) == UInt32(pin))
        }
        #expect(DeviceConfiguration(interrupts: .intx(pin: 1)).interrupts == .intx(pin: 1))
        #expect(throws: DeviceConfigurationError.self) { try makeDevice(makeConfig(profile: profile, interrupts: .intx(pin: 5))) }
        #expect(throws: DeviceConfigurationError.self) { try makeDevice(makeConfig(profile: profile, interrupts: .intx(pin: 0))) }
    }

    @Test("CFG-INT-3: Interrupt Line read/write, reset 00h, no effect", arguments: allProfiles)
    func interruptLine(profile: String) throws {
        let rig = try makeRig(profile: profile)
        #expect(rig[0].cfg8(0x3C) == 0)
        rig[0].configWrite(offset: 0x3C, size: 1, value: 0xA5)
        #expect(rig[0].cfg8(0x3C) == 0xA5)
        rig[0].configWrite(offset: 0x3C, size: 1, value: 0x0B)
        #expect(rig[0].cfg8(0x3C) == 0x0B)
        rig[0].driverEnableMSIX()
        rig[1].ring(0, vector: 0)
        #expect(rig.sinks[0].events == [rig[0].expectedMessage(0)])
    }

    // MARK: reserved and access rules

    @Test("CFG-RSV-1: unimplemented header registers read 0, ignore writes", arguments: allProfiles)
    func reservedHeader(profile: String) throws {
        let (_, d) = try makeDevice(makeConfig(profile: profile))
        let offsets = [0x0C, 0x0D, 0x0F, 0x28, 0x29, 0x2A, 0x2B] + Array(0x35...0x3B) + [0x3E, 0x3F]
        for off in offsets {
            d.configWrite(offset: off, size: 1, value: 0xFF)
            #expect(d.cfg8(off) == 0, "0x\(String(off, radix: 16))")
        }
        d.configWrite(offset: 0x0C, size: 4, value: 0xFFFF_FFFF)
        #expect(d.cfg32(0x0C) == 0)
        d.configWrite(offset: 0x28, size: 4, value: 0xFFFF_FFFF)
        #expect(d.cfg32(0x28) == 0)
        #expect(d.findings.filter { $0.kind == .violation }.isEmpty, "\(d.findings)")
    }

    @Test("CFG-RSV-2: unused bytes in 40h–FFh read 0, ignore writes", arguments: allProfiles)
    func reservedCapabilityArea(profile: String) throws {
        let (_, d) = try makeDevice(makeConfig(profile: profile, vectors: 2))
        // bytes covered by a capability
        var used = Set<Int>()
        let vsLen = Int(d.cfg8(d.vendorCap + 2))
        for i in 0..<vsLen { used.insert(d.vendorCap + i) }
        for i in 0..<12 { used.insert(d.msixCap! + i) }
        for off in 0x40..<0x100 where !used.contains(off) {
            #expect(d.cfg8(off) == 0, "0x\(String(off, radix: 16))")
            d.configWrite(offset: off, size: 1, value: 0xFF)
            #expect(d.cfg8(off) == 0, "0x\(String(off, radix: 16))")
        }
        #expect(d.cfg32(0xFC) == 0)
    }

    @Test("CFG-ACC-1, CFG-ACC-2: valid and invalid configuration accesses")
    func accessValidity() throws {
        let (_, d) = try makeDevice(makeConfig())
        for (off, size) in [(0x00, 1), (0x01, 1), (0x02, 2), (0x00, 4), (0xFC, 4), (0xFF, 1), (0xFE, 2)] {
            _ = d.configRead(offset: off, size: size)
        }
        d.configWrite(offset: 0x3C, size: 1, value: 1)
        #expect(d.findings.isEmpty)
        #expect(d.configRead(offset: 0x01, size: 2) == 0)
        #expect(d.configRead(offset: 0x02, size: 4) == 0)
        #expect(d.configRead(offset: 0x00, size: 3) == 0)
        #expect(d.configRead(offset: 0x100, size: 1) == 0)
        #expect(d.configRead(offset: 0x00, size: 8) == 0)
        #expect(d.configRead(offset: -4, size: 4) == 0)
        #expect(d.findingIDs == Array(repeating: "CFG-ACC-2", count: 6))
        d.clearFindings()
        d.configWrite(offset: 0x05, size: 2, value: 0x0606)
        d.configWrite(offset: 0x03, size: 4, value: 0xFFFF_FFFF)
        d.configWrite(offset: 0x3C, size: 3, value: 0xFF)
        d.configWrite(offset: 0x100, size: 1, value: 0xFF)
        #expect(d.cfg16(0x04) == 0)
        #expect(d.cfg8(0x3C) == 1)
        #expect(d.findingIDs == Array(repeating: "CFG-ACC-2", count: 4))
    }

    @Test("CFG-ACC-3: read-only bits keep their value inside wider writes", arguments: allProfiles)
    func wideWriteMask(profile: String) throws {
        let (_, d) = try makeDevice(makeConfig(profile: profile))
        d.configWrite(offset: 0x04, size: 4, value: 0xFFFF_FFFF)
        #expect(d.cfg32(0x04) == 0x0010_0406)
        d.configWrite(offset: 0x3C, size: 4, value: 0xFFFF_FFFF)
        #expect(d.cfg32(0x3C) == 0x0000_00FF)
        // vendor cap dword: only one-shot changes
        let vs = d.vendorCap
        let before = d.cfg32(vs)
        d.configWrite(offset: vs, size: 4, value: 0xFFFF_FFFF)
        #expect(d.cfg32(vs) == (before & 0x00FF_FFFF) | 0x0100_0000)
        // Message Control dword: Enable and Function Mask only
        let mx = d.msixCap!
        d.configWrite(offset: mx, size: 4, value: 0xFFFF_FFFF)
        #expect(d.cfg32(mx) == (UInt32(0xC000) << 16) | (d.cfg32(mx) & 0xFFFF))
        #expect(d.cfg16(mx + 2) == 0xC000)
    }

    @Test("CFG-ACC-4: wide reads compose bytes little-endian", arguments: allProfiles)
    func littleEndianReads(profile: String) throws {
        let (_, d) = try makeDevice(makeConfig(profile: profile, protocolType: 0x1234))
        d.configWrite(offset: 0x04, size: 2, value: 0x0006)
        #expect(d.cfg32(0x04) == 0x0010_0006)
        for base in stride(from: 0, to: 0x100, by: 4) {
            let bytes = (0..<4).map { d.cfg8(base + $0) }
            let composed = bytes[0] | bytes[1] << 8 | bytes[2] << 16 | bytes[3] << 24
            #expect(d.cfg32(base) == composed, "0x\(String(base, radix: 16))")
            #expect(d.cfg16(base) == bytes[0] | bytes[1] << 8)
            #expect(d.cfg16(base + 2) == bytes[2] | bytes[3] << 8)
        }
    }

    @Test("CFG-ACC-5: partial writes change only the covered bytes", arguments: allProfiles)
    func partialWrites(profile: String) throws {
        let (_, d) = try makeDevice(makeConfig(profile: profile))
        d.configWrite(offset: 0x04, size: 1, value: 0x06)
        #expect(d.cfg16(0x04) == 0x0006)
        d.configWrite(offset: 0x05, size: 1, value: 0x04)
        #expect(d.cfg16(0x04) == 0x0406)
        d.configWrite(offset: 0x04, size: 1, value: 0x00)
        #expect(d.cfg16(0x04) == 0x0400)
        // high byte of Message Control sets Enable without touching the table size
        let mx = d.msixCap!
        let low = d.cfg8(mx + 2)
        d.configWrite(offset: mx + 3, size: 1, value: 0x80)
        #expect(d.cfg16(mx + 2) == 0x8000 | low)
    }
}

@Suite struct DriverCheckingTests {
    @Test("CFG-ACC-3: trying to change a read-only config register is an ineffective access; BAR probes are not")
    func readOnlyWrites() throws {
        let fabric = try LocalFabric(template: DeviceConfiguration(profile: "jailhouse", vectors: 2))
        let d = try fabric.addDevice()
        d.configWrite(offset: 0x00, size: 4, value: 0xDEAD_BEEF)      // Vendor/Device ID
        #expect(d.configRead(offset: 0x00, size: 4) == 0x4106_110A)
        #expect(d.findings.map(\.requirement) == ["CFG-ACC-3", "CFG-ACC-3"])  // Vendor ID and Device ID
        #expect(d.findings.allSatisfy { $0.kind == .ineffective })
        d.clearFindings()
        d.configWrite(offset: 0x18, size: 4, value: 0xFFFF_FFFF)      // BAR2 (absent in jailhouse): a sizing probe
        d.configWrite(offset: 0x40, size: 4, value: d.configRead(offset: 0x40, size: 4) | 0x0100_0000)  // one-shot via a dword
        #expect(d.findings.isEmpty, "\(d.findings)")
        #expect(d.configRead(offset: 0x43, size: 1) == 1)
    }

    @Test("MSIX-PBA-1: reading the PBA where there are no pending bits is reported as relying on one")
    func relyingOnPendingBits() throws {
        for (profile, expected) in [("spec", ["MSIX-PBA-1"]), ("qemu-rfc", [])] {
            let fabric = try LocalFabric(template: DeviceConfiguration(profile: profile, vectors: 2))
            let d = try fabric.addDevice()
            _ = d.barRead(1, offset: UInt64(d.layout.msixPBAOffset), size: 4)
            #expect(d.findings.map(\.requirement) == expected, "\(profile)")
        }
    }
}
