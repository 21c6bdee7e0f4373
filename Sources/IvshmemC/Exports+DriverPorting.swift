import CIvshmemTrap
import IvshmemModel
import IvshmemPlatform

// What drivers ported from real hardware needed (issue 14): a read that says whether anything
// decoded the address, firmware-style BAR assignment, and a hook on trapped accesses. The Base
// Address option and unaligned windows live with the calls they extend (Exports.swift).

@_cdecl("ivshmem2_mmio_read_status")
public func ivs_c_mmio_read_status(_ handle: OpaquePointer?, _ address: UInt64, _ size: UInt32, _ value: UnsafeMutablePointer<UInt64>?) -> Int32 {
    let call = "ivshmem2_mmio_read_status"
    guard let p = box(handle, as: PlatformBox.self), let value else { return fail(IVSHMEM2_EINVAL, "\(call): NULL argument") }
    guard [1, 2, 4, 8].contains(size) else { return fail(IVSHMEM2_EINVAL, "\(call): size must be 1, 2, 4 or 8, got \(size)") }
    value.pointee = p.platform.mmioRead(address, size: Int(size))
    let ecam = p.platform.ecamBase
    let claimed = (address >= ecam && address - ecam < PCIPlatform.ecamSize) || p.platform.decodeMemory(address) != nil
    guard claimed else { return fail(IVSHMEM2_ENODEV, "\(call): nothing decodes 0x\(String(address, radix: 16)) (no BAR there, or Memory Space is off)") }
    return OK
}

@_cdecl("ivshmem2_firmware_assign")
public func ivs_c_firmware_assign(_ handle: OpaquePointer?, _ bus: UInt8, _ dev: UInt8, _ fn: UInt8, _ bars: UnsafeMutablePointer<UInt64>?) -> Int32 {
    let call = "ivshmem2_firmware_assign"
    guard let p = box(handle, as: PlatformBox.self) else { return fail(IVSHMEM2_EINVAL, "\(call): platform is NULL") }
    switch makeBDF(bus, dev, fn, call) {
    case .failure(let s): return s.code
    case .success(let bdf):
        guard Firmware.enumerate(p.platform).contains(bdf) else { return fail(IVSHMEM2_ENODEV, "\(call): no ivshmem v2 function at \(bdf)") }
        let assigned = p.firmware.withLock { fw in fw.assign(p.platform, bdf) }
        if let bars { for i in 0..<6 { bars[i] = assigned[i] ?? 0 } }
        return OK
    }
}

@_cdecl("ivshmem2_set_access_hook")
public func ivs_c_set_access_hook(_ handle: OpaquePointer?, _ fn: ivshmem2_access_fn?, _ context: UnsafeMutableRawPointer?) -> Int32 {
    guard let p = box(handle, as: PlatformBox.self) else { return fail(IVSHMEM2_EINVAL, "ivshmem2_set_access_hook: platform is NULL") }
    p.accessHook.withLock { $0 = PlatformBox.AccessHook(fn: fn, context: context) }
    return OK
}
