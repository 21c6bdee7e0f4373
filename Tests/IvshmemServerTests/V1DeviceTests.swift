import IvshmemModel
import IvshmemPlatform
import IvshmemPosix
import IvshmemSync
import Testing

/// Collects what a v1 device signals.
final class V1Interrupts: V1InterruptSink, @unchecked Sendable {
    let messages = Locked<[(vector: Int, address: UInt64, data: UInt32)]>([])
    let levels = Locked<[Bool]>([])
    func msixMessage(vector: Int, address: UInt64, data: UInt32) { messages.withLock { $0.append((vector, address, data)) } }
    func intxLevel(_ asserted: Bool) { levels.withLock { $0.append(asserted) } }
    var vectors: [Int] { messages.withLock { $0.map(\.vector) } }
    /// Waits (bounded) until a message for `vector` arrived, and removes it.
    func take(vector: Int, timeout: Double = 10) -> Bool {
        Monotonic.poll(timeout: timeout) {
            messages.withLock { list in
                guard let i = list.firstIndex(where: { $0.vector == vector }) else { return false }
                list.remove(at: i)
                return true
            }
        }
    }
}

/// Our v1 device (IvshmemV1Device) on its own: the tables, the hooks, driver checking.
extension IvshmemServerTestSuite {
@Suite("v1 device model")
struct V1DeviceTests {
    func device(_ personality: V1Personality, vectors: Int = 2, size: Int = 1 << 20) throws -> IvshmemV1Device {
        try IvshmemV1Device(configuration: V1DeviceConfiguration(personality: personality, vectors: vectors, sharedMemorySize: UInt64(size)),
                            sharedMemory: SharedMemory(allocating: size))
    }

    func image(_ d: IvshmemV1Device) throws -> V1ConfigImage {
        try V1ConfigImage(reading: { d.configRead(offset: $0, size: $1) }, writing: { d.configWrite(offset: $0, size: $2, value: $1) })
    }

    @Test("V1-REG-MASK-1, V1-REG-STAT-1, V1-REG-POS-1, V1-REG-DB-1: the v1 BAR0 register offsets come from the tables (00h IntrMask, 04h IntrStatus, 08h IVPosition, 0Ch Doorbell)")
    func registerOffsets() throws {
        let d = try device(.doorbell)
        #expect(d.registerOffsets == V1BAR0Registers(interruptMask: 0x00, interruptStatus: 0x04, ivPosition: 0x08, doorbell: 0x0C))
        d.writeRegister(d.registerOffsets.interruptMask, 0xA5A5_0F0F)
        #expect(d.readRegister(d.registerOffsets.interruptMask) == 0xA5A5_0F0F, "IntrMask holds all 32 bits at its offset")
        #expect(d.readRegister(d.registerOffsets.ivPosition) == 0xFFFF_FFFF, "IVPosition reads -1 before attach")
    }

    @Test("V1-CFG-ID-1, V1-CFG-CAP-1, V1-CFG-BAR-2, V1-CFG-BAR-4, V1-MSIX-CAP-1: our doorbell and plain personalities present the configuration space spec/ivshmem1.md states (the same check QEMU passes)")
    func configurationSpace() throws {
        #expect(try image(device(.doorbell, vectors: 3)).violations(of: .doorbell(vectors: 3, sharedMemorySize: 1 << 20)) == [])
        #expect(try image(device(.plain, size: 1 << 22)).violations(of: .plain(sharedMemorySize: 1 << 22)) == [])
        let legacy = try device(.legacyINTx)
        #expect(legacy.configRead(offset: 0x3D, size: 1) == 1, "legacy-intx has INTA#")
        #expect(legacy.configRead(offset: 0x34, size: 1) == 0)
    }

    @Test("V1-REG-ACC-1, V1-REG-STAT-2, V1-REG-RST-1, V1-MSIX-TBL-1, V1-REG-POS-2: driver checking, reset values, IVPosition -1 before attach and 0 in plain; a reset keeps the ID")
    func registersAndReset() throws {
        let d = try device(.doorbell)
        #expect(d.readRegister(0x08) == 0xFFFF_FFFF, "no ID yet")
        #expect(try device(.plain).readRegister(0x08) == 0)
        d.assignID(7)
        #expect(d.readRegister(0x08) == 7)
        #expect(d.barRead(0, offset: 0x00, size: 2) == 0)
        d.barWrite(0, offset: 0x02, size: 4, value: 1)
        #expect(d.findings.map(\.requirement) == ["V1-REG-ACC-1", "V1-REG-ACC-1"])
        d.writeRegister(0x00, 0xFFFF_FFFF)
        d.writeRegister(0x04, 0x33)
        d.barWrite(1, offset: 12, size: 4, value: 0)  // unmask vector 0
        d.configWrite(offset: 0x04, size: 2, value: 0x6)
        d.configWrite(offset: 0x42, size: 2, value: 0x8000)
        d.reset()
        #expect(d.readRegister(0x00) == 0 && d.readRegister(0x04) == 0)
        #expect(d.readRegister(0x08) == 7, "the ID survives a reset")
        #expect(d.configRead(offset: 0x04, size: 2) == 0 && d.configRead(offset: 0x42, size: 2) == 1)
        #expect(d.barRead(1, offset: 12, size: 4) == 1, "vector 0 masked again")
        #expect(d.barRead(1, offset: 0, size: 4) == 0)
    }

    @Test("V1-CFG-BAR-1, V1-CFG-BAR-2, V1-CFG-BAR-3, V1-IRQ-MSIX-1, V1-IRQ-INTX-1: the v1 device on the shared PCI platform: firmware finds 1af4:1110 and assigns its BARs, MMIO reaches IVPosition and the shared memory, events land in the platform's interrupt log")
    func onThePlatform() throws {
        let platform = PCIPlatform()
        let d = try device(.doorbell, vectors: 2)
        d.assignID(5)
        let bdf = try BDF(device: 4)
        try platform.add(d, at: bdf)
        #expect(Firmware.enumerate(platform, vendor: 0x1AF4, device: 0x1110) == [bdf])
        var firmware = Firmware()
        let bars = firmware.assign(platform, bdf)
        let bar0 = try #require(bars[0]), bar1 = try #require(bars[1]), bar2 = try #require(bars[2])
        #expect(bar2 >= 1 << 32, "BAR2 is 64-bit prefetchable and lands above 4 GiB")
        #expect(platform.mmioRead(bar0 + 0x08, size: 4) == 5, "IVPosition through the platform")
        platform.mmioWrite(bar2 + 0x10, size: 4, value: 0xC0FFEE)
        #expect(d.sharedMemory.loadState(peer: 4) == 0xC0FFEE, "BAR2 is the shared memory")
        // MSI-X: program vector 1, enable; an event on it is a message in the platform's log.
        platform.mmioWrite(bar1 + 16, size: 4, value: 0xFEE0_1000)
        platform.mmioWrite(bar1 + 16 + 8, size: 4, value: 0x41)
        platform.mmioWrite(bar1 + 16 + 12, size: 4, value: 0)
        let cap = IvshmemV1Device.msixCapabilityOffset + MSIXControl.capabilityOffset
        platform.configWrite(bdf, offset: cap, size: 2, value: UInt32(MSIXControl.enable.rawValue))
        d.receiveEvent(vector: 1)
        let r = try #require(platform.interrupts.wait(timeout: 10))
        #expect(r.source == bdf && r.kind == .msix(vector: 1, address: 0xFEE0_1000, data: 0x41))
        // Memory decode off: the BARs no longer answer.
        platform.configWrite(bdf, offset: PCIConfig.command, size: 2, value: 0)
        #expect(platform.mmioRead(bar0 + 0x08, size: 4) == 0xFFFF_FFFF)
        // legacy-intx on the same platform: a rising INTx level is an INTA# record.
        let legacy = try device(.legacyINTx)
        let lbdf = try BDF(device: 5)
        try platform.add(legacy, at: lbdf)
        let before = platform.interrupts.count
        legacy.writeRegister(0x00, 1)
        legacy.receiveEvent(vector: 0)
        let edge = try #require(platform.interrupts.wait(after: before, timeout: 10))
        #expect(edge.source == lbdf && edge.kind == .intx(pin: 1))
    }

    @Test("V1-IRQ-INTX-1: legacy-intx: an event sets IntrStatus to 1; INTx follows IntrStatus AND IntrMask; reading IntrStatus deasserts")
    func legacyINTx() throws {
        let d = try device(.legacyINTx)
        let irq = V1Interrupts()
        d.interruptSink = irq
        d.receiveEvent(vector: 0)
        #expect(d.intxAsserted == false, "masked by IntrMask 0")
        d.writeRegister(0x00, 1)
        #expect(d.intxAsserted && irq.levels.withLock { $0 } == [true])
        #expect(d.readRegister(0x04) == 1)
        #expect(!d.intxAsserted && irq.levels.withLock { $0 } == [true, false])
        #expect(d.readRegister(0x04) == 0)
        d.writeRegister(0x04, 0x10)  // software may set it too
        #expect(!d.intxAsserted, "0x10 AND mask 1 is 0")
        #expect(irq.messages.withLock { $0.isEmpty })
    }
}
}
