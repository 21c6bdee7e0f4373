import IvshmemModel
import IvshmemPlatform
import Testing

@Suite("Through the virtual PCI platform")
struct PlatformTests {

    struct Machine {
        let fabric: LocalFabric
        let platforms: [PCIPlatform]
        let bdfs: [BDF]
        let bases: [[Int: UInt64]]
        let devices: [IvshmemDevice]
    }

    /// Each peer in its own "guest": its own platform, its device at 00:0(3+i).0, BARs assigned by firmware.
    func boot(profile: String = "spec", peers: Int = 2, vectors: Int = 2, rw: UInt64 = 0x1000, out: UInt64 = 0, registerSpace: RegisterSpace = .memory) throws -> Machine {
        let (fabric, devices) = try makeFabric(profile: profile, vectors: vectors, peers: peers, rw: rw, out: out, registerSpace: registerSpace)
        var platforms: [PCIPlatform] = [], bdfs: [BDF] = [], bases: [[Int: UInt64]] = []
        for (i, d) in devices.enumerated() {
            let p = PCIPlatform()
            let bdf = try BDF(device: UInt8(3 + i))
            try p.add(d, at: bdf)
            #expect(Firmware.enumerate(p) == [bdf])
            var fw = Firmware()
            bases.append(fw.assign(p, bdf))
            platforms.append(p); bdfs.append(bdf)
        }
        return Machine(fabric: fabric, platforms: platforms, bdfs: bdfs, bases: bases, devices: devices)
    }

    /// A driver through ECAM: enable MSI-X, program entries, unmask, enable interrupts.
    func driverSetup(_ m: Machine, _ i: Int, dataBase: UInt32) {
        let p = m.platforms[i], bdf = m.bdfs[i]
        let ecam = p.ecamBase | UInt64(bdf.bus) << 20 | UInt64(bdf.device) << 15 | UInt64(bdf.function) << 12
        // find the MSI-X capability by walking the list
        var cap = Int(p.mmioRead(ecam + 0x34, size: 1))
        while cap != 0, p.mmioRead(ecam + UInt64(cap), size: 1) != 0x11 { cap = Int(p.mmioRead(ecam + UInt64(cap) + 1, size: 1)) }
        let mc = ecam + UInt64(cap) + 2
        p.mmioWrite(mc, size: 2, value: 0xC000 | p.mmioRead(mc, size: 2))  // enable + function mask while programming
        let table = m.bases[i][1]!
        for v in 0..<m.devices[i].configuration.vectors {
            let e = table + UInt64(16 * v)
            p.mmioWrite(e, size: 4, value: 0xFEE0_0000 | UInt64(i) << 12)
            p.mmioWrite(e + 4, size: 4, value: 0)
            p.mmioWrite(e + 8, size: 4, value: UInt64(dataBase) + UInt64(v))
            p.mmioWrite(e + 12, size: 4, value: 0)
        }
        p.mmioWrite(mc, size: 2, value: 0x8000)
        p.mmioWrite(m.bases[i][0]! + Reg.interruptControl, size: 4, value: 1)
    }

    @Test("REG-DB-3, IRQ-MSIX-1, IRQ-STATE-1, MSIX-TBL-7: doorbell and state change end to end through PCIPlatform", arguments: allProfiles)
    func endToEnd(profile: String) throws {
        let m = try boot(profile: profile)
        for i in 0..<2 {
            let cmd = m.platforms[i].configRead(m.bdfs[i], offset: 4, size: 2)
            #expect(cmd & 0x6 == 0x6, "firmware enabled memory decode and bus mastering")
            #expect(m.bases[i][0] != nil && m.bases[i][1] != nil)
            #expect((m.bases[i][2] != nil) == (profile != "jailhouse"))
        }
        driverSetup(m, 0, dataBase: 0x40)
        driverSetup(m, 1, dataBase: 0x80)
        let (p0, p1) = (m.platforms[0], m.platforms[1])
        let reg0 = m.bases[0][0]!, reg1 = m.bases[1][0]!
        #expect(p0.mmioRead(reg0 + Reg.id, size: 4) == 0)
        #expect(p1.mmioRead(reg1 + Reg.id, size: 4) == 1)
        #expect(p1.mmioRead(reg1 + Reg.maxPeers, size: 4) == 2)

        // peer 0 rings peer 1, vector 1
        p0.mmioWrite(reg0 + Reg.doorbell, size: 4, value: 0x0001_0001)
        let r = try #require(p1.interrupts.wait(timeout: 1))
        #expect(r.source == m.bdfs[1])
        #expect(r.kind == .msix(vector: 1, address: 0xFEE0_1000, data: 0x81))
        #expect(p0.interrupts.count == 0)

        // peer 1 changes its state: peer 0 gets vector 0 and sees the new state in the table
        p1.mmioWrite(reg1 + Reg.state, size: 4, value: 0xC0FFEE)
        let s = try #require(p0.interrupts.wait(timeout: 1))
        #expect(s.kind == .msix(vector: 0, address: 0xFEE0_0000, data: 0x40))
        if let shm0 = m.bases[0][2] {
            #expect(p0.mmioRead(shm0 + 4, size: 4) == 0xC0FFEE)
        } else {
            #expect(p0.mmioRead(m.devices[0].configuration.baseAddress + 4, size: 4) == 0xC0FFEE)
        }
        #expect(p1.interrupts.count == 1)
        #expect(m.devices.allSatisfy { $0.findings.isEmpty })
    }

    @Test("IRQ-MSIX-1: an interrupt delivered while its platform goes away is still logged safely (a peer quitting as a doorbell arrives)")
    func interruptDuringPlatformTeardown() throws {
        // The link's thread holds the device's sink while the platform that plugged it is being
        // released: the sink must keep what it logs into alive (it once held the log unowned,
        // and `ivshmem2 peer` aborted on quit now and then).
        var m: Machine? = try boot()
        driverSetup(m!, 0, dataBase: 0x40)
        driverSetup(m!, 1, dataBase: 0x80)
        let (fabric, p0, reg0, receiver) = (m!.fabric, m!.platforms[0], m!.bases[0][0]!, m!.devices[1])
        let sink = try #require(receiver.interruptSink)
        weak let gone = m!.platforms[1]
        weak let log = m!.platforms[1].interrupts
        m = nil
        #expect(gone == nil, "the receiving platform is gone, its sink is not")
        p0.mmioWrite(reg0 + Reg.doorbell, size: 4, value: 0x0001_0001)
        let kept = try #require(log, "the sink keeps the interrupt log alive")
        let r = try #require(kept.wait(timeout: 5))
        #expect(r.kind == .msix(vector: 1, address: 0xFEE0_1000, data: 0x81))
        withExtendedLifetime((sink, fabric)) {}
    }

    @Test("CFG-CMD-7: memory decode off → reads all-ones, writes dropped", arguments: allProfiles)
    func memoryDecodeOff(profile: String) throws {
        let m = try boot(profile: profile)
        let p = m.platforms[0], d = m.devices[0]
        let reg = m.bases[0][0]!, tbl = m.bases[0][1]!
        p.mmioWrite(reg + Reg.state, size: 4, value: 5)
        p.configWrite(m.bdfs[0], offset: 4, size: 2, value: 0x4)
        #expect(p.mmioRead(reg + Reg.id, size: 4) == 0xFFFF_FFFF)
        #expect(p.mmioRead(reg + Reg.id, size: 1) == 0xFF)
        #expect(p.mmioRead(tbl + 12, size: 4) == 0xFFFF_FFFF)
        #expect(p.mmioRead(tbl, size: 8) == .max)
        p.mmioWrite(reg + Reg.state, size: 4, value: 6)
        p.mmioWrite(tbl + 8, size: 4, value: 0x99)
        if let shm = m.bases[0][2] {
            #expect(p.mmioRead(shm + 0x1000, size: 2) == 0xFFFF)
            p.mmioWrite(shm + 0x1000, size: 4, value: 0x1234)
            #expect(d.sharedMemoryLoad(offset: 0x1000, size: 4) == 0)
        }
        #expect(d.readRegister(Reg.state) == 5)
        #expect(d.stateTableEntry(0) == 5)
        #expect(d.barRead(1, offset: 8, size: 4) == 0)
        p.configWrite(m.bdfs[0], offset: 4, size: 2, value: 0x6)
        #expect(p.mmioRead(reg + Reg.state, size: 4) == 5)
    }

    @Test("CFG-CMD-8: I/O decode off → reads all-ones, writes dropped")
    func ioDecodeOff() throws {
        let m = try boot(registerSpace: .io)
        let p = m.platforms[0], d = m.devices[0]
        let port = try #require(m.bases[0][0])
        #expect(m.platforms[0].configRead(m.bdfs[0], offset: 4, size: 2) & 1 == 1)
        #expect(p.ioRead(UInt16(port) + UInt16(Reg.maxPeers), size: 4) == 2)
        p.ioWrite(UInt16(port) + UInt16(Reg.state), size: 4, value: 3)
        #expect(d.readRegister(Reg.state) == 3)
        p.configWrite(m.bdfs[0], offset: 4, size: 2, value: 0x6)
        #expect(p.ioRead(UInt16(port) + UInt16(Reg.maxPeers), size: 4) == 0xFFFF_FFFF)
        #expect(p.ioRead(UInt16(port), size: 2) == 0xFFFF)
        p.ioWrite(UInt16(port) + UInt16(Reg.state), size: 4, value: 4)
        #expect(d.readRegister(Reg.state) == 3)
        // config through the legacy 0xCF8/0xCFC ports
        p.ioWrite(0xCF8, size: 4, value: 0x8000_0000 | UInt32(m.bdfs[0].device) << 11 | 0x00)
        #expect(p.ioRead(0xCFC, size: 4) == 0x4106_110A)
        p.ioWrite(0xCF8, size: 4, value: 0x8000_0000 | UInt32(m.bdfs[0].device) << 11 | 0x10)
        #expect(p.ioRead(0xCFC, size: 4) == UInt32(port) | 1)
    }

    @Test("CFG-CMD-9: Bus Master off → no MSI-X message", arguments: allProfiles)
    func busMasterOff(profile: String) throws {
        let m = try boot(profile: profile)
        driverSetup(m, 1, dataBase: 0x10)
        m.platforms[1].configWrite(m.bdfs[1], offset: 4, size: 2, value: 0x2)
        m.devices[0].ring(1, vector: 0)
        #expect(m.platforms[1].interrupts.wait(timeout: 0.05) == nil)
        #expect(m.devices[1].statistics.droppedNoBusMaster == 1)
        m.platforms[1].configWrite(m.bdfs[1], offset: 4, size: 2, value: 0x6)
        #expect(m.platforms[1].interrupts.count == 0, "the lost message is not sent later")
        m.devices[0].ring(1, vector: 0)
        #expect(m.platforms[1].interrupts.wait(timeout: 1)?.kind == .msix(vector: 0, address: 0xFEE0_1000, data: 0x10))
        #expect(m.devices[1].findingIDs == ["CFG-CMD-9"], "the lost message is reported to the driver")
        // enabling MSI-X while Bus Master is off is flagged too
        let (_, d) = try makeDevice(makeConfig(profile: profile))
        d.configWrite(offset: 0x04, size: 2, value: 0x2)
        d.configWrite(offset: d.msixCap! + 2, size: 2, value: 0x8000)
        #expect(d.findingIDs == ["CFG-CMD-9"])
    }

    @Test("SHM-BAR-3: jailhouse shared memory at the Base Address, independent of Command")
    func jailhouseBaseAddress() throws {
        let m = try boot(profile: "jailhouse", rw: 0x1000, out: 0x1000)
        let p = m.platforms[0], d = m.devices[0]
        let base = d.configuration.baseAddress
        #expect(d.cfg64(d.vendorCap + 0x18) == base)
        p.mmioWrite(base + 0x1000, size: 8, value: 0x0102_0304_0506_0708)
        #expect(m.devices[1].sharedMemoryLoad(offset: 0x1000, size: 8) == 0x0102_0304_0506_0708)
        p.configWrite(m.bdfs[0], offset: 4, size: 2, value: 0)
        #expect(p.mmioRead(base + 0x1000, size: 8) == 0x0102_0304_0506_0708)
        p.mmioWrite(base + 0x2000, size: 4, value: 0xAB)  // own output section (peer 0)
        #expect(m.devices[1].sharedMemoryLoad(offset: 0x2000, size: 4) == 0xAB)
        p.mmioWrite(base + 0x3000, size: 4, value: 0xBAD)  // peer 1's output
        #expect(m.devices[1].sharedMemoryLoad(offset: 0x3000, size: 4) == 0)
        #expect(d.findingIDs == ["SHM-OUT-2"])
        m.devices[1].writeRegister(Reg.state, 0x42)
        #expect(p.mmioRead(base + 4, size: 4) == 0x42)
    }
}
