/// A v1 function's configuration space as a driver (or firmware) sees it: the header dwords,
/// the BAR sizing probes and which bits writes reach — read through any config mechanism, so
/// that the same checks run against QEMU's device and ours (spec/ivshmem1.md §1, §2).
struct V1ConfigImage {
    /// Which v1 device is expected.
    enum Expected {
        case doorbell(vectors: Int, sharedMemorySize: UInt64)
        case plain(sharedMemorySize: UInt64)
    }

    /// Dwords 00h…4Ch as read.
    var dwords: [Int: UInt32] = [:]
    /// What each BAR reads after all-ones was written (restored afterwards).
    var barProbes: [UInt32] = []
    /// Interrupt Line after writing 0Bh.
    var interruptLineWritten: UInt32 = 0
    /// Message Control after writing FFFFh (restored afterwards); nil without MSI-X.
    var messageControlWritten: UInt32?

    init(reading read: (Int, Int) throws -> UInt32, writing write: (Int, UInt32, Int) throws -> Void) throws {
        for offset in stride(from: 0, through: 0x4C, by: 4) { dwords[offset] = try read(offset, 4) }
        for bar in 0..<6 {
            let offset = 0x10 + 4 * bar
            let saved = try read(offset, 4)
            try write(offset, 0xFFFF_FFFF, 4)
            barProbes.append(try read(offset, 4))
            try write(offset, saved, 4)
        }
        let line = try read(0x3C, 1)
        try write(0x3C, 0x0B, 1)
        interruptLineWritten = try read(0x3C, 1)
        try write(0x3C, line, 1)
        if dwords[0x34]! & 0xFF == 0x40 {
            let control = try read(0x42, 2)
            try write(0x42, 0xFFFF, 2)
            messageControlWritten = try read(0x42, 2)
            try write(0x42, control, 2)
        }
    }

    /// Every way the image differs from spec/ivshmem1.md, each naming its requirement.
    func violations(of expected: Expected) -> [String] {
        var found: [String] = []
        func check(_ id: String, _ what: String, _ actual: UInt32?, _ wanted: UInt32) {
            if actual != wanted { found.append("\(id): \(what) is \(actual.map { "0x" + String($0, radix: 16) } ?? "nil"), expected 0x\(String(wanted, radix: 16))") }
        }
        let doorbell: Bool
        let size: UInt64
        switch expected {
        case .doorbell(_, let s): doorbell = true; size = s
        case .plain(let s): doorbell = false; size = s
        }
        check("V1-CFG-ID-1", "vendor/device", dwords[0x00], 0x1110_1AF4)
        check("V1-CFG-CMD-1", "Command", dwords[0x04].map { $0 & 0xFFFF }, 0)
        check("V1-CFG-CAP-1", "Status", dwords[0x04].map { $0 >> 16 }, doorbell ? 0x0010 : 0)
        check("V1-CFG-ID-2", "revision", dwords[0x08].map { $0 & 0xFF }, 0x01)
        check("V1-CFG-ID-3", "class code", dwords[0x08].map { $0 >> 8 }, 0x05_0000)
        check("V1-CFG-ID-3", "header type", dwords[0x0C].map { ($0 >> 16) & 0xFF }, 0)
        check("V1-CFG-ID-4", "subsystem", dwords[0x2C], 0x1100_1AF4)
        check("V1-CFG-CAP-1", "capabilities pointer", dwords[0x34].map { $0 & 0xFF }, doorbell ? 0x40 : 0)
        check("V1-CFG-INT-1", "Interrupt Pin", dwords[0x3C].map { ($0 >> 8) & 0xFF }, 0)
        check("V1-CFG-INT-1", "Interrupt Line after writing 0Bh", interruptLineWritten, 0x0B)
        check("V1-CFG-BAR-1", "BAR0 probe", barProbes[0], 0xFFFF_FF00)
        check(doorbell ? "V1-CFG-BAR-2" : "V1-CFG-BAR-4", "BAR1 probe", barProbes[1], doorbell ? 0xFFFF_F000 : 0)
        check("V1-CFG-BAR-3", "BAR2 probe", barProbes[2], UInt32(truncatingIfNeeded: ~(size - 1)) | 0xC)
        check("V1-CFG-BAR-3", "BAR3 probe", barProbes[3], UInt32(truncatingIfNeeded: ~(size - 1) >> 32))
        check("V1-CFG-BAR-4", "BAR4 probe", barProbes[4], 0)
        check("V1-CFG-BAR-4", "BAR5 probe", barProbes[5], 0)
        if case .doorbell(let vectors, _) = expected {
            check("V1-MSIX-CAP-1", "MSI-X capability dword", dwords[0x40], UInt32(vectors - 1) << 16 | 0x0011)
            check("V1-MSIX-CAP-1", "table offset/BIR", dwords[0x44], 0x0000_0001)
            check("V1-MSIX-CAP-1", "PBA offset/BIR", dwords[0x48], 0x0000_0801)
            check("V1-MSIX-CAP-2", "Message Control after writing FFFFh", messageControlWritten, 0xC000 | UInt32(vectors - 1))
        } else {
            check("V1-CFG-CAP-1", "dword 40h", dwords[0x40], 0)
        }
        return found
    }
}
