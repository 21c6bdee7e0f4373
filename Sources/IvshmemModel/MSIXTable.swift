/// An MSI-X table in BAR1 (MSIX-TBL-1, -2; V1-MSIX-TBL-1): the entries as a register block and
/// what delivery reads from them. Shared by the v2 and v1 devices.
struct MSIXTable {
    let block: RegisterBlock
    /// Offset of Vector Control within an entry (from the tables' `vectorControl` hook).
    let vectorControlOffset: Int

    /// Whether entry `v`'s Mask bit is set.
    func masked(_ v: Int) -> Bool {
        UInt32(truncatingIfNeeded: block.raw(offset: v * MSIXTableEntry.size + vectorControlOffset, size: 4)) & MSIXTableEntry.masked != 0
    }

    /// The message entry `v` describes: a dword write of `data` to `address`.
    func message(_ v: Int) -> (address: UInt64, data: UInt32) {
        let base = v * MSIXTableEntry.size
        let lo = block.raw(offset: base + MSIXTableEntry.messageAddress, size: 4)
        let hi = block.raw(offset: base + MSIXTableEntry.messageUpperAddress, size: 4)
        return (lo | hi << 32, UInt32(truncatingIfNeeded: block.raw(offset: base + MSIXTableEntry.messageData, size: 4)))
    }

    /// Vectors whose latched event may now be sent: pending, and the entry unmasked. The
    /// caller checks Enable and Function Mask first, clears the bits it sends.
    func releasable(_ pending: [Bool]) -> [Int] {
        pending.indices.filter { pending[$0] && !masked($0) }
    }
}
