import IvshmemModel
import IvshmemSpec
import Testing

@Suite("Reset and construction")
struct ResetAndConstructionTests {

    /// Drives a device into a state far from reset.
    func dirty(_ d: IvshmemDevice) {
        d.driverEnableMSIX()
        d.setOneShot(true)
        d.writeRegister(Reg.interruptControl, 1)
        d.writeRegister(Reg.state, 0x77)
        d.configWrite(offset: 0x3C, size: 1, value: 0x0B)
        d.configWrite(offset: 0x04, size: 2, value: 0x0406)
        for i in 0..<6 { d.configWrite(offset: 0x10 + 4 * i, size: 4, value: 0xFFFF_FFFF) }
        if let mx = d.msixCap { d.configWrite(offset: mx + 2, size: 2, value: 0xC000) }
    }

    func configImage(_ d: IvshmemDevice) -> [UInt32] { (0..<64).map { d.cfg32(4 * $0) } }
    func registerImage(_ d: IvshmemDevice) -> [UInt32] { stride(from: UInt64(0), to: 0x20, by: 4).map { d.readRegister($0) } }
    func tableImage(_ d: IvshmemDevice) -> [UInt64] {
        guard let bar = d.layout.bar(.msix) else { return [] }
        return stride(from: UInt64(0), to: bar.size, by: 8).map { d.barRead(1, offset: $0, size: 8) }
    }

    @Test("DEV-RST-1: reset writes State 0 through the normal path", arguments: allProfiles)
    func resetState(profile: String) throws {
        let rig = try makeRig(profile: profile, peers: 3)
        for d in rig.devices { d.driverEnableMSIX() }
        rig[0].writeRegister(Reg.state, 5)
        for s in rig.sinks { s.clear() }
        rig[0].reset()
        #expect(rig[0].readRegister(Reg.state) == 0)
        #expect(rig[1].stateTableEntry(0) == 0)
        #expect(rig.sinks[1].events == [rig[1].expectedMessage(0)])
        #expect(rig.sinks[2].events == [rig[2].expectedMessage(0)])
        #expect(rig.sinks[0].events.isEmpty)
        // previous state 0: no event
        rig[0].reset()
        #expect(rig.sinks[1].events.count == 1 && rig.sinks[2].events.count == 1)
    }

    @Test("DEV-RST-2, DEV-RST-3, DEV-RST-4, DEV-RST-5, DEV-RST-6, DEV-RST-7: reset restores registers, MSI-X, Command, BARs, Interrupt Line", arguments: allProfiles)
    func resetRegisters(profile: String) throws {
        let rig = try makeRig(profile: profile, vectors: 3)
        let d = rig[0]
        d.driverEnableMSIX()
        for v in 0..<3 { d.barWrite(1, offset: UInt64(16 * v + 12), size: 4, value: 0) }
        dirty(d)
        d.reset()
        #expect(d.readRegister(Reg.interruptControl) == 0)
        for v in 0..<3 {
            #expect(d.barRead(1, offset: UInt64(16 * v), size: 8) == 0)
            #expect(d.barRead(1, offset: UInt64(16 * v + 8), size: 8) == 0x1_0000_0000)
        }
        #expect(d.cfg16(d.msixCap! + 2) == 2)
        #expect(d.cfg16(0x04) == 0)
        #expect(d.cfg32(0x10) == 0)
        #expect(d.cfg32(0x14) == 0)
        #expect(d.cfg32(0x18) == (profile == "jailhouse" ? 0 : 0xC))
        #expect(d.cfg32(0x1C) == 0)
        #expect(d.cfg8(0x3C) == 0)
        // the device really is quiet: a doorbell after reset sends nothing
        rig.sinks[0].clear()
        rig[1].ring(0, vector: 0)
        #expect(rig.sinks[0].events.isEmpty)
    }

    @Test("DEV-RST-5, DEV-RST-6: reset of an I/O-BAR device")
    func resetIO() throws {
        let (_, d) = try makeDevice(makeConfig(registerSpace: .io))
        d.configWrite(offset: 0x10, size: 4, value: 0xC000)
        d.configWrite(offset: 0x04, size: 2, value: 0x0407)
        d.reset()
        #expect(d.cfg32(0x10) == 1)
        #expect(d.cfg16(0x04) == 0)
    }

    @Test("DEV-RST-8: spec/jailhouse reset clears one-shot", arguments: ["spec", "jailhouse"])
    func resetOneShotCleared(profile: String) throws {
        let (_, d) = try makeDevice(makeConfig(profile: profile))
        d.setOneShot(true)
        d.reset()
        #expect(d.cfg8(d.vendorCap + 3) == 0)
    }

    @Test("DEV-RST-9: qemu-rfc reset keeps one-shot")
    func resetOneShotKept() throws {
        let rig = try makeRig(profile: "qemu-rfc")
        let d = rig[0]
        d.setOneShot(true)
        d.reset()
        #expect(d.cfg8(d.vendorCap + 3) == 1)
        // and it still acts
        d.driverEnableMSIX()
        rig[1].ring(0, vector: 0)
        #expect(d.readRegister(Reg.interruptControl) == 0)
        d.setOneShot(false)
        d.reset()
        #expect(d.cfg8(d.vendorCap + 3) == 0)
    }

    @Test("DEV-RST-10: qemu-rfc reset clears pending bits")
    func resetPending() throws {
        let rig = try makeRig(profile: "qemu-rfc", vectors: 2)
        let d = rig[0]
        d.driverEnableMSIX(unmask: false)
        rig[1].ring(0, vector: 1)
        let pba = UInt64(d.layout.msixPBAOffset)
        #expect(d.barRead(1, offset: pba, size: 4) == 0b10)
        d.reset()
        #expect(d.barRead(1, offset: pba, size: 4) == 0)
        d.driverEnableMSIX()
        #expect(rig.sinks[0].events.isEmpty)
    }

    @Test("DEV-RST-11: reset leaves ID, N, V, sizes, Base Address, class code, pin, membership and other memory alone", arguments: allProfiles)
    func resetKeeps(profile: String) throws {
        let rig = try makeRig(profile: profile, vectors: 2, peers: 3, rw: 0x1000, out: 0x1000, protocolType: 0x4321)
        let d = rig[1]
        rig[0].writeRegister(Reg.state, 0xAA)
        rig[0].sharedMemoryStore(offset: 0x1000, size: 8, value: 0x1122_3344_5566_7788)
        d.sharedMemoryStore(offset: 0x3000, size: 4, value: 0xCAFE)  // own output section
        dirty(d)
        let vs = d.vendorCap
        let keep = [d.cfg32(0x08), d.cfg32(vs + 4), d.cfg32(vs + 8), d.cfg32(vs + 0x10), d.cfg8(0x3D), d.cfg8(vs + 2)]
        let base = d.cfg64(vs + 0x18)
        d.reset()
        #expect(d.readRegister(Reg.id) == 1)
        #expect(d.readRegister(Reg.maxPeers) == 3)
        #expect(d.cfg16(d.msixCap! + 2) & 0x7FF == 1)
        #expect([d.cfg32(0x08), d.cfg32(vs + 4), d.cfg32(vs + 8), d.cfg32(vs + 0x10), d.cfg8(0x3D), d.cfg8(vs + 2)] == keep)
        #expect(d.cfg64(vs + 0x18) == base)
        #expect(rig.fabric.device(1) === d)
        #expect(rig.fabric.isActive(1))
        #expect(d.stateTableEntry(0) == 0xAA)
        #expect(d.sharedMemoryLoad(offset: 0x1000, size: 8) == 0x1122_3344_5566_7788)
        #expect(d.sharedMemoryLoad(offset: 0x3000, size: 4) == 0xCAFE)
        // still linked: doorbells both ways
        rig[0].driverEnableMSIX()
        d.ring(0, vector: 1)
        #expect(rig.sinks[0].events.last == rig[0].expectedMessage(1))
    }

    @Test("DEV-RST-11: reset keeps the INTx pin", arguments: ["spec", "jailhouse"])
    func resetKeepsPin(profile: String) throws {
        let (_, d) = try makeDevice(makeConfig(profile: profile, interrupts: .intx(pin: 3)))
        d.reset()
        #expect(d.cfg8(0x3D) == 3)
    }

    @Test("DEV-RST-12: a new device equals the same device after a reset", arguments: allProfiles)
    func resetEqualsConstruction(profile: String) throws {
        let (_, fresh) = try makeDevice(makeConfig(profile: profile, vectors: 4, rw: 0x2000, out: 0x1000, protocolType: 0x8003))
        let (_, used) = try makeDevice(makeConfig(profile: profile, vectors: 4, rw: 0x2000, out: 0x1000, protocolType: 0x8003))
        let (c0, r0, t0) = (configImage(fresh), registerImage(fresh), tableImage(fresh))
        dirty(used)
        used.barWrite(1, offset: 0x10, size: 8, value: 0x1234_5678)
        #expect(configImage(used) != c0)
        used.reset()
        let oneShotKept = profile == "qemu-rfc"
        var expected = c0
        if oneShotKept { expected[used.vendorCap / 4] |= 0x0100_0000 }
        #expect(configImage(used) == expected)
        #expect(registerImage(used) == r0)
        #expect(tableImage(used) == t0)
        if oneShotKept {
            used.setOneShot(false)
            used.reset()
            #expect(configImage(used) == c0)
        }
    }

    // MARK: construction checks

    @Test("DEV-CFG-1: vector count 0 or above the profile limit is refused")
    func badVectors() throws {
        for (p, bad) in [("spec", 0), ("spec", 1025), ("jailhouse", 17), ("qemu-rfc", 1025), ("qemu-rfc", 0)] {
            let e = #expect(throws: DeviceConfigurationError.self) { try makeDevice(makeConfig(profile: p, vectors: bad)) }
            #expect(e?.parameter == "vectors", "\(p) \(bad)")
            let f = #expect(throws: DeviceConfigurationError.self) { try LocalFabric(template: makeConfig(profile: p, vectors: bad)) }
            #expect(f?.parameter == "vectors")
        }
    }

    @Test("DEV-CFG-2: N outside 2..65536 is refused")
    func badMaxPeers() throws {
        for n in [UInt32(0), 1, 65537, .max] {
            let e = #expect(throws: DeviceConfigurationError.self) { try makeDevice(makeConfig(maxPeers: n)) }
            #expect(e?.parameter == "maxPeers", "N=\(n)")
        }
        _ = try makeDevice(makeConfig(maxPeers: 2))
        _ = try makeDevice(makeConfig(maxPeers: 65536, rw: 0))
    }

    @Test("DEV-CFG-3: ID ≥ N is refused")
    func badID() throws {
        for (id, n) in [(UInt32(2), UInt32(2)), (5, 4), (65536, 65536)] {
            let config = makeConfig(id: id, maxPeers: n, rw: 0)
            let mem = try SharedMemory(allocating: 0x40000)
            let e = #expect(throws: DeviceConfigurationError.self) { try IvshmemDevice(configuration: config, sharedMemory: mem, link: nil) }
            #expect(e?.parameter == "id", "id \(id) N \(n)")
        }
        let config = makeConfig(id: 65535, maxPeers: 65536, rw: 0)
        let d = try IvshmemDevice(configuration: config, sharedMemory: SharedMemory(allocating: 0x40000), link: nil)
        #expect(d.readRegister(Reg.id) == 65535)
    }

    @Test("DEV-CFG-4: section sizes not page multiples are refused")
    func badSectionSizes() throws {
        for (rw, out, param) in [(UInt64(1), UInt64(0), "rwSectionSize"), (0x1000, 0x10, "outputSectionSize"), (0xFFF, 0, "rwSectionSize")] {
            let e = #expect(throws: DeviceConfigurationError.self) { try LocalFabric(template: makeConfig(rw: rw, out: out)) }
            #expect(e?.parameter == param)
        }
        var c = makeConfig(maxPeers: 2000)
        c.stateTableSize = 0x1000  // below 4·N and not the formula
        let e = #expect(throws: DeviceConfigurationError.self) { try makeDevice(c) }
        #expect(e?.parameter == "stateTableSize")
    }

    @Test("DEV-CFG-5: backing memory smaller than the layout is refused")
    func memoryTooSmall() throws {
        let config = makeConfig(maxPeers: 2, rw: 0x2000, out: 0x1000)  // total 5000h
        let e = #expect(throws: DeviceConfigurationError.self) {
            try IvshmemDevice(configuration: config, sharedMemory: SharedMemory(allocating: 0x4FFF), link: nil)
        }
        #expect(e?.parameter == "sharedMemory")
        _ = try IvshmemDevice(configuration: config, sharedMemory: SharedMemory(allocating: 0x5000), link: nil)
    }

    @Test("DEV-CFG-6: protocol ≤ FFFFh (enforced by the 16-bit type)")
    func protocolRange() throws {
        // The configuration's protocol is a UInt16, so a larger value cannot be expressed; the
        // whole range is accepted and reported.
        let (_, d) = try makeDevice(makeConfig(protocolType: 0xFFFF))
        #expect(d.cfg8(0x09) | d.cfg8(0x0A) << 8 == 0xFFFF)
        #expect(UInt16.max == 0xFFFF)
    }

    @Test("DEV-CFG-7: interrupt mode and register-region kind per profile")
    func profileModes() throws {
        let e1 = #expect(throws: DeviceConfigurationError.self) { try makeDevice(makeConfig(profile: "qemu-rfc", interrupts: .intx(pin: 1))) }
        #expect(e1?.parameter == "interrupts")
        for p in ["jailhouse", "qemu-rfc"] {
            let e = #expect(throws: DeviceConfigurationError.self) { try makeDevice(makeConfig(profile: p, registerSpace: .io)) }
            #expect(e?.parameter == "registerSpace", "\(p)")
        }
        _ = try makeDevice(makeConfig(profile: "spec", interrupts: .intx(pin: 1)))
        _ = try makeDevice(makeConfig(profile: "jailhouse", interrupts: .intx(pin: 1)))
        _ = try makeDevice(makeConfig(profile: "spec", registerSpace: .io))
        _ = try makeDevice(makeConfig(profile: "spec", interrupts: .intx(pin: 1), registerSpace: .io))
    }

    @Test("DEV-CFG-8: joining an in-process link checks parameters and a free ID")
    func linkJoin() throws {
        let (fabric, _) = try makeFabric(vectors: 2, peers: 2, maxPeers: 3, rw: 0x1000, out: 0x1000, protocolType: 0x4001)
        let e1 = #expect(throws: DeviceConfigurationError.self) { try fabric.addDevice(id: 0) }
        #expect(e1?.parameter == "id")
        let e2 = #expect(throws: DeviceConfigurationError.self) { try fabric.addDevice { $0.stateTableSize = 0x2000 } }
        #expect(e2?.parameter == "stateTableSize")
        let d = try fabric.addDevice()
        #expect(d.id == 2)
        let e3 = #expect(throws: DeviceConfigurationError.self) { try fabric.addDevice() }
        #expect(e3?.parameter == "maxPeers")
        fabric.removeDevice(id: 0)
        #expect(try fabric.addDevice().id == 0)
    }

    @Test("DEV-CFG-9: a failed construction produces no device and names the check")
    func failedConstruction() throws {
        let (fabric, _) = try makeFabric(peers: 1, maxPeers: 4)
        let e = #expect(throws: DeviceConfigurationError.self) { try fabric.addDevice { $0.vectors = 0 } }
        #expect(e?.parameter == "vectors")
        #expect(e.map { !$0.message.isEmpty && $0.description.contains("vectors") } == true)
        #expect((0..<4).compactMap { fabric.device($0) }.count == 1)
        #expect(!fabric.isActive(1))
        // the ID is still free
        #expect(try fabric.addDevice().id == 1)
    }
}
