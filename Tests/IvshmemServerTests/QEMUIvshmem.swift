import IvshmemPosix

/// QEMU's ivshmem device (`ivshmem-doorbell` or `ivshmem-plain`) in a ``QEMUMachine``, with its
/// BARs placed and decoding: what firmware would do, done by hand because `-S` keeps firmware
/// from running. MSI-X entry v, once programmed, writes `messageData(v)` to guest RAM at
/// `messageAddress(v)`, where ``messageArrived(vector:)`` finds it.
final class QEMUIvshmem {
    static let bar0: UInt64 = 0xE000_0000
    static let bar1: UInt64 = 0xE000_1000
    static let bar2: UInt64 = 0xE100_0000
    static func messageAddress(_ vector: Int) -> UInt64 { 0x0010_0000 + UInt64(vector) * 16 }
    static func messageData(_ vector: Int) -> UInt32 { 0xC0DE_0000 | UInt32(vector) }

    let machine: QEMUMachine
    let pci: QEMUPCIFunction

    /// Finds 1AF4:1110, programs BAR0, BAR1 (when implemented) and BAR2/3, and sets Memory
    /// Space and Bus Master (V1-CFG-CMD-1).
    init(machine: QEMUMachine) throws {
        self.machine = machine
        pci = try QEMUPCIFunction.find(vendor: 0x1AF4, device: 0x1110, in: machine)
        try pci.setConfig(0x10, UInt32(Self.bar0), size: 4)
        try pci.setConfig(0x14, UInt32(Self.bar1), size: 4)
        try pci.setConfig(0x18, UInt32(truncatingIfNeeded: Self.bar2), size: 4)
        try pci.setConfig(0x1C, UInt32(Self.bar2 >> 32), size: 4)
        try pci.setConfig(0x04, 0x0006, size: 2)
    }

    func register(_ offset: UInt64) throws -> UInt32 { try machine.readl(Self.bar0 + offset) }
    func setRegister(_ offset: UInt64, _ value: UInt32) throws { try machine.writel(Self.bar0 + offset, value) }
    func memory(_ offset: UInt64) throws -> UInt32 { try machine.readl(Self.bar2 + offset) }
    func setMemory(_ offset: UInt64, _ value: UInt32) throws { try machine.writel(Self.bar2 + offset, value) }

    /// Programs entries 0..<vectors (unmasked) and sets MSI-X Enable (V1-MSIX-CAP-2).
    func enableMSIX(vectors: Int) throws {
        for v in 0..<vectors {
            let entry = Self.bar1 + UInt64(v) * 16
            try machine.writel(Self.messageAddress(v), 0)
            try machine.writel(entry, UInt32(Self.messageAddress(v)))
            try machine.writel(entry + 4, 0)
            try machine.writel(entry + 8, Self.messageData(v))
            try machine.writel(entry + 12, 0)
        }
        try setMSIXEnabled(true)
    }

    func setMSIXEnabled(_ on: Bool) throws {
        let control = try pci.config(0x42, size: 2)
        try pci.setConfig(0x42, on ? control | 0x8000 : control & ~0x8000, size: 2)
    }

    func setMasked(vector: Int, _ masked: Bool) throws {
        try machine.writel(Self.bar1 + UInt64(vector) * 16 + 12, masked ? 1 : 0)
    }

    func pendingBits() throws -> UInt32 { try machine.readl(Self.bar1 + 0x800) }

    /// Whether entry `vector`'s message reached guest RAM since the last call (it is cleared).
    func messageArrived(vector: Int) throws -> Bool {
        guard try machine.readl(Self.messageAddress(vector)) == Self.messageData(vector) else { return false }
        try machine.writel(Self.messageAddress(vector), 0)
        return true
    }

    /// Waits (bounded) until entry `vector`'s message arrives.
    func waitForMessage(vector: Int, timeout: Double = 10) -> Bool {
        Monotonic.poll(timeout: timeout, interval: 0.001) { (try? messageArrived(vector: vector)) == true }
    }
}
