/// What a PCI platform needs from a function it decodes: config cycles, the address ranges the
/// function claims, BAR-relative accesses, and the slot it sits in. The ivshmem v2 device and
/// the ivshmem v1 device both are one, so both plug into the same `PCIPlatform` (the platform
/// keeps an unretained fast path for v2 devices).
public protocol PCIFunction: AnyObject, Sendable {
    /// A config read of 1, 2 or 4 naturally aligned bytes.
    func configRead(offset: Int, size: Int) -> UInt32
    func configWrite(offset: Int, size: Int, value: UInt32)
    /// The BAR (or -1: a fixed range outside the BARs) and offset `address` reaches in memory
    /// (`io` false) or I/O space, nil when the function does not claim it.
    func decode(_ address: UInt64, io: Bool) -> (bar: Int, offset: UInt64)?
    func barRead(_ bar: Int, offset: UInt64, size: Int) -> UInt64
    func barWrite(_ bar: Int, offset: UInt64, size: Int, value: UInt64)
    /// The PCI device number (slot) the function was plugged into.
    func plugged(intoSlot slot: UInt8)
}

extension IvshmemDevice: PCIFunction {}
