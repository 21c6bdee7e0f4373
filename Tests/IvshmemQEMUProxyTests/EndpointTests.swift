import IvshmemModel
import IvshmemPosix
import IvshmemQEMUProxy
import Testing

/// The endpoint behind QEMU's `x-pci-proxy-dev`, driven the way QEMU 7.2 drives it.
@Suite("QEMU proxy endpoint")
struct EndpointTests {
    @Test("QEMU's probe reads the identity and sizes the BARs dword by dword (CFG-ID-1, CFG-ID-2, CFG-BAR-5, CFG-BAR-6, CFG-BAR-7, CFG-INT-2)")
    func probe() throws {
        let q = try FakeQEMU()
        #expect(try q.configRead(0x00, 2) == 0x110A)
        #expect(try q.configRead(0x02, 2) == 0x4106)
        #expect(try q.configRead(0x3D, 1) == 1)  // INTx pin A: what the proxy assumes too
        // QEMU writes all-ones to each BAR dword, reads back, restores.
        var sizes: [UInt64] = []
        for bar in 0..<6 {
            let reg = UInt32(0x10 + 4 * bar)
            let original = try #require(try q.configRead(reg, 4))
            try q.configWrite(reg, 4, 0xFFFF_FFFF)
            sizes.append(try #require(try q.configRead(reg, 4)))
            try q.configWrite(reg, 4, UInt32(original))
        }
        #expect(sizes[0] == 0xFFFF_F000)  // BAR0: 4 KiB memory
        #expect(sizes[1] == 0)            // BAR1: no MSI-X in INTx mode
        #expect(sizes[2] & 0xF == 0xC)    // BAR2: 64-bit prefetchable
        #expect(sizes[3] == 0xFFFF_FFFF)  // BAR3: the upper half, which QEMU takes for a 16-byte BAR
        #expect(sizes[4] == 0 && sizes[5] == 0)
        #expect(q.device.findings.isEmpty)
        let end = q.finish()
        #expect(end.ended && end.error == nil)
        #expect(q.endpoint.statistics.messages[.configRead] == 15)
    }

    @Test("BAR accesses reach the registers and the shared memory at the addresses firmware programmed (REG-ID-1, REG-ST-1, REG-ST-2, SHM-BAR-1, SHM-BAR-4, CFG-CMD-7)")
    func barAccesses() throws {
        let q = try FakeQEMU(maxPeers: 4, id: 2)
        try q.configWrite(0x10, 4, UInt32(FakeQEMU.bar0))
        #expect(try q.barRead(FakeQEMU.bar0, 4) == 0xFFFF_FFFF)  // memory decode still off
        try q.program()
        #expect(try q.barRead(FakeQEMU.bar0 + 0x00, 4) == 2)
        #expect(try q.barRead(FakeQEMU.bar0 + 0x04, 4) == 4)
        try q.barWrite(FakeQEMU.bar0 + 0x10, 4, 0x6E57)
        #expect(try q.barRead(FakeQEMU.bar0 + 0x10, 4) == 0x6E57)
        #expect(try q.barRead(FakeQEMU.bar2 + 8, 4) == 0x6E57)  // State Table entry of peer 2
        let rw = q.device.sharedMemoryLayout.geometry.stateTableSize
        try q.barWrite(FakeQEMU.bar2 + rw, 8, 0x1122_3344_5566_7788)
        #expect(try q.barRead(FakeQEMU.bar2 + rw, 8) == 0x1122_3344_5566_7788)
        #expect(try q.barRead(FakeQEMU.bar2 + rw + 1, 1) == 0x77)
        #expect(try q.barRead(0x1000, 4) == 0xFFFF_FFFF)  // nobody's address
        #expect(q.finish().error == nil)
        #expect(q.endpoint.statistics.undecodedAccesses == 2)
        #expect(q.device.findings.isEmpty)
    }

    @Test("A pulse asserts the line through the irqfd; pulses while it is asserted assert it again after the resample (IRQ-INTX-1, IRQ-INTX-2, IRQ-EN-1)")
    func intxThroughIRQFD() throws {
        let q = try FakeQEMU()
        let irqfd = try EventFD.create(), resample = try EventFD.create()
        defer { irqfd.close(); resample.close() }
        try q.send(ProxyCommand.setIRQFD.rawValue, fds: [irqfd.fd, resample.fd])
        try q.program()
        q.device.receiveEvent(vector: 0)  // Interrupt Control is 0: discarded
        #expect(try irqfd.consume() == nil)
        try q.barWrite(FakeQEMU.bar0 + 0x08, 4, 1)
        q.device.receiveEvent(vector: 0)
        #expect(try irqfd.consume() == 1)
        q.device.receiveEvent(vector: 0)  // still asserted: remembered for the resample
        #expect(try irqfd.consume() == nil)
        try resample.signal()
        #expect(Monotonic.poll(timeout: 5) { (try? irqfd.wait(timeoutMilliseconds: 0)) == true })
        #expect(try irqfd.consume() == 1)
        try resample.signal()
        #expect(Monotonic.poll(timeout: 5) { q.endpoint.statistics.resamples == 2 })
        try q.configWrite(0x05, 1, 0x04)  // INTx Disable
        q.device.receiveEvent(vector: 0)
        #expect(try irqfd.consume() == nil)
        let s = q.endpoint.statistics
        #expect(s.intxPulses == 2 && s.irqfdAssertions == 2)
        #expect(q.finish().error == nil)
    }

    @Test("DEVICE_RESET resets the function and is answered (DEV-RST-2, DEV-RST-5, DEV-RST-6)")
    func deviceReset() throws {
        let q = try FakeQEMU()
        try q.program()
        try q.barWrite(FakeQEMU.bar0 + 0x08, 4, 1)
        try q.send(ProxyCommand.deviceReset.rawValue)
        #expect(try q.readReply() == 0)
        #expect(try q.configRead(0x04, 2) == 0)
        #expect(try q.configRead(0x10, 4) == 0)
        #expect(q.device.readRegister(0x08) == 0)
        #expect(q.finish().error == nil)
    }

    @Test("Memory-sync messages are accepted unanswered and their descriptors closed (CFG-ACC-1)")
    func memorySync() throws {
        let q = try FakeQEMU()
        let probes = try FakeQEMU.descriptorProbes(3)
        defer { for fd in probes.partners { fd.closeQuietly() } }
        var table = [UInt8](repeating: 0, count: ProxyFrame.maxPayload)
        table[0] = 1
        try q.send(ProxyCommand.syncSystemMemory.rawValue, payload: table, fds: probes.passed)
        for fd in probes.passed { fd.closeQuietly() }
        #expect(try q.configRead(0x00, 2) == 0x110A)  // answered next: the sync was not
        for fd in probes.partners { #expect(try FakeQEMU.sawEndOfFile(fd)) }
        #expect(q.finish().error == nil)
        #expect(q.endpoint.statistics.messages[.syncSystemMemory] == 1)
    }
}
