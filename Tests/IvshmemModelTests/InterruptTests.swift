import IvshmemModel
import Testing

@Suite("Interrupt delivery")
struct InterruptTests {

    @Test("IRQ-EN-1: event with Interrupt Control 0 is discarded, not delivered later", arguments: allProfiles)
    func gateClosed(profile: String) throws {
        let rig = try makeRig(profile: profile)
        rig[0].driverEnableMSIX(interruptControl: false)
        rig[1].ring(0, vector: 0)
        rig[1].writeRegister(Reg.state, 1)
        #expect(rig[0].statistics.droppedDisabled == 2)
        rig[0].writeRegister(Reg.interruptControl, 1)
        #expect(rig.sinks[0].events.isEmpty)
        #expect(rig[0].barRead(1, offset: UInt64(rig[0].layout.msixPBAOffset), size: 4) == 0)
    }

    @Test("IRQ-EN-2: event with Interrupt Control 1 is delivered", arguments: allProfiles)
    func gateOpen(profile: String) throws {
        let rig = try makeRig(profile: profile, vectors: 2)
        rig[0].driverEnableMSIX()
        rig[1].ring(0, vector: 1)
        #expect(rig.sinks[0].events == [rig[0].expectedMessage(1)])
        #expect(rig[0].statistics.delivered == 1)
    }

    @Test("IRQ-ONESHOT-1, IRQ-ONESHOT-3: one-shot clears Interrupt Control per delivery; without it IC stays", arguments: allProfiles)
    func oneShot(profile: String) throws {
        let rig = try makeRig(profile: profile)
        let d = rig[0]
        d.driverEnableMSIX()
        rig[1].ring(0, vector: 0)
        rig[1].ring(0, vector: 0)
        #expect(d.readRegister(Reg.interruptControl) == 1)
        #expect(rig.sinks[0].events.count == 2)
        d.setOneShot(true)
        rig[1].ring(0, vector: 0)
        #expect(d.readRegister(Reg.interruptControl) == 0)
        rig[1].ring(0, vector: 0)
        #expect(rig.sinks[0].events.count == 3)
        d.writeRegister(Reg.interruptControl, 1)
        rig[1].writeRegister(Reg.state, 3)
        #expect(rig.sinks[0].events.count == 4)
        #expect(d.readRegister(Reg.interruptControl) == 0)
    }

    @Test("IRQ-ONESHOT-2: one-shot clears even when the mode stage drops or latches (MSI-X)", arguments: allProfiles)
    func oneShotDroppedMSIX(profile: String) throws {
        let rig = try makeRig(profile: profile, vectors: 2)
        let d = rig[0]
        d.driverEnableMSIX()
        d.setOneShot(true)
        let mc = d.msixCap! + 2
        let stages: [(String, () -> Void, () -> Void)] = [
            ("MSI-X disabled", { d.configWrite(offset: mc, size: 2, value: 0) }, { d.configWrite(offset: mc, size: 2, value: 0x8000) }),
            ("function masked", { d.configWrite(offset: mc, size: 2, value: 0xC000) }, { d.configWrite(offset: mc, size: 2, value: 0x8000) }),
            ("vector masked", { d.barWrite(1, offset: 16 + 12, size: 4, value: 1) }, { d.barWrite(1, offset: 16 + 12, size: 4, value: 0) }),
            ("Bus Master 0", { d.configWrite(offset: 4, size: 2, value: 2) }, { d.configWrite(offset: 4, size: 2, value: 6) }),
        ]
        for (name, block, unblock) in stages {
            block()
            d.writeRegister(Reg.interruptControl, 1)
            rig[1].ring(0, vector: 1)
            #expect(d.readRegister(Reg.interruptControl) == 0, "\(name)")
            unblock()
        }
    }

    @Test("IRQ-ONESHOT-2: one-shot clears when INTx is disabled", arguments: ["spec", "jailhouse"])
    func oneShotDroppedINTx(profile: String) throws {
        let rig = try makeRig(profile: profile, interrupts: .intx(pin: 1))
        let d = rig[0]
        d.driverEnableINTx()
        d.setOneShot(true)
        d.configWrite(offset: 4, size: 2, value: 0x0402)
        rig[1].ring(0, vector: 0)
        #expect(d.readRegister(Reg.interruptControl) == 0)
        #expect(rig.sinks[0].events.isEmpty)
    }

    @Test("IRQ-MSIX-1, IRQ-MSIX-2: MSI-X delivery sends entry v's message, never INTx", arguments: allProfiles)
    func msixDelivery(profile: String) throws {
        let rig = try makeRig(profile: profile, vectors: 4, peers: 3)
        for d in rig.devices { d.driverEnableMSIX() }
        rig[0].configWrite(offset: 4, size: 2, value: 0x0006)  // INTx Disable = 0
        for v in [3, 0, 2, 1] { rig[1].ring(0, vector: UInt32(v)) }
        rig[2].writeRegister(Reg.state, 1)
        #expect(rig.sinks[0].events == [3, 0, 2, 1, 0].map { rig[0].expectedMessage($0) })
        #expect(rig.sinks.allSatisfy { $0.edges.isEmpty })
    }

    @Test("IRQ-INTX-1: INTx delivery is one pulse unless disabled", arguments: ["spec", "jailhouse"])
    func intxPulse(profile: String) throws {
        let rig = try makeRig(profile: profile, peers: 3, interrupts: .intx(pin: 2))
        rig[0].driverEnableINTx()
        rig[1].ring(0, vector: 0)
        #expect(rig.sinks[0].events == [.intx(pin: 2)])
        rig[2].writeRegister(Reg.state, 4)
        #expect(rig.sinks[0].events == [.intx(pin: 2), .intx(pin: 2)])
        rig[1].ring(0, vector: 1)  // V = 1 in INTx mode
        #expect(rig.sinks[0].events.count == 2)
        #expect(rig[0].statistics.delivered == 2)
    }

    @Test("IRQ-INTX-2: INTx disabled: no pulse, not remembered", arguments: ["spec", "jailhouse"])
    func intxDisabled(profile: String) throws {
        let rig = try makeRig(profile: profile, interrupts: .intx(pin: 1))
        rig[0].driverEnableINTx()
        rig[0].configWrite(offset: 5, size: 1, value: 0x04)
        rig[1].ring(0, vector: 0)
        #expect(rig.sinks[0].events.isEmpty)
        rig[0].configWrite(offset: 5, size: 1, value: 0x00)
        #expect(rig.sinks[0].events.isEmpty)
        rig[1].ring(0, vector: 0)
        #expect(rig.sinks[0].events == [.intx(pin: 1)])
    }

    @Test("IRQ-STATE-1, IRQ-STATE-2: state change raises vector 0 at every other peer; each applies its gate", arguments: allProfiles)
    func stateChange(profile: String) throws {
        let rig = try makeRig(profile: profile, vectors: 2, peers: 3)
        rig[0].driverEnableMSIX()
        rig[1].driverEnableMSIX(interruptControl: false)
        rig[2].driverEnableMSIX()
        rig[2].writeRegister(Reg.state, 0x11)
        #expect(rig.sinks[0].events == [rig[0].expectedMessage(0)])
        #expect(rig.sinks[1].events.isEmpty)
        #expect(rig[1].statistics.droppedDisabled == 1)
        #expect(rig.sinks[2].events.isEmpty)
        #expect(rig[2].statistics.received == 0)
    }

    @Test("IRQ-VEC-1, DEV-CFG-8: all peers of a link have the same V and parameters")
    func sameVectors() throws {
        let (fabric, devs) = try makeFabric(vectors: 4, peers: 2, maxPeers: 4)
        #expect(devs.allSatisfy { $0.configuration.vectors == 4 })
        #expect(devs.allSatisfy { $0.cfg16($0.msixCap! + 2) & 0x7FF == 3 })
        let mismatches: [(String, (inout DeviceConfiguration) -> Void)] = [
            ("vectors", { $0.vectors = 2 }),
            ("maxPeers", { $0.maxPeers = 8 }),
            ("rwSectionSize", { $0.rwSectionSize = 0x2000 }),
            ("outputSectionSize", { $0.outputSectionSize = 0x1000 }),
            ("protocolType", { $0.protocolType = 1 }),
            ("id", { $0.id = 1 }),
        ]
        for (param, change) in mismatches {
            let e = #expect(throws: DeviceConfigurationError.self, "\(param)") { try fabric.addDevice(configure: change) }
            #expect(e?.parameter == param)
        }
        #expect(fabric.device(2) == nil && fabric.device(3) == nil, "DEV-CFG-9: a failed join creates nothing")
        _ = try fabric.addDevice()
        #expect(fabric.device(2) != nil)
    }

    @Test("IRQ-VEC-2, DEV-CFG-1: vector limits per mode and profile")
    func vectorLimits() throws {
        let limits = ["spec": 1024, "jailhouse": 16, "qemu-rfc": 1024]
        for (p, limit) in limits {
            _ = try makeDevice(makeConfig(profile: p, vectors: 1))
            _ = try makeDevice(makeConfig(profile: p, vectors: limit))
            for bad in [0, -1, limit + 1] {
                let e = #expect(throws: DeviceConfigurationError.self, "\(p) V=\(bad)") { try makeDevice(makeConfig(profile: p, vectors: bad)) }
                #expect(e?.parameter == "vectors")
            }
        }
        for p in ["spec", "jailhouse"] {
            _ = try makeDevice(makeConfig(profile: p, vectors: 1, interrupts: .intx(pin: 1)))
            let e = #expect(throws: DeviceConfigurationError.self) { try makeDevice(makeConfig(profile: p, vectors: 2, interrupts: .intx(pin: 1))) }
            #expect(e?.parameter == "vectors")
        }
    }

    @Test("IRQ-COAL-1: in-process link, n events give n deliveries", arguments: allProfiles)
    func noCoalescing(profile: String) throws {
        let rig = try makeRig(profile: profile, vectors: 2)
        rig[0].driverEnableMSIX()
        for _ in 0..<50 { rig[1].ring(0, vector: 1) }
        for i in 1...10 { rig[1].writeRegister(Reg.state, UInt32(i)) }
        #expect(rig.sinks[0].events.count == 60)
        #expect(rig[0].statistics.delivered == 60)
        #expect(rig[0].statistics.received == 60)
    }
}
