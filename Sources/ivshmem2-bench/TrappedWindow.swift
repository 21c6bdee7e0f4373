#if canImport(Glibc)
import Glibc
#endif
import CBench
import CIvshmemTrap
import IvshmemModel
import IvshmemPosix
import IvshmemServer

// The C API's trapped MMIO window (ivshmem2_mmio_map): what a driver pays for a plain
// `volatile` register access instead of an accessor call. The C API is libivshmem2's own code
// (IvshmemC, linked into this binary), called through its public header.

/// A device attached through the C API and programmed the way a bare-metal driver does it,
/// through config accesses only: BAR0 and the MSI-X table BAR sized and placed, Memory Space
/// and Bus Master on, MSI-X entry 0 (data 0) unmasked, MSI-X enabled, Interrupt Control set.
/// BAR0 is then mapped as a trapped window. Like any driver it knows the register offsets from
/// the spec (ID 00h, Interrupt Control 08h, Doorbell 0Ch), not from the model.
final class CAPIDevice {
    /// Where the driver places BAR0 and the MSI-X BAR (page aligned, far from the ECAM window).
    static let bar0Address: UInt64 = 0xC000_0000
    static let msixBARAddress: UInt64 = 0xC010_0000

    private(set) var platform: OpaquePointer?
    private(set) var device: OpaquePointer?
    /// BAR0 mapped as a trapped window (4 KiB).
    private(set) var window: UnsafeMutableRawPointer?
    let bdf: (bus: UInt8, device: UInt8, function: UInt8) = (0, 3, 0)

    init(socketPath: String) throws {
        try check(ivshmem2_platform_create(0, &platform), "ivshmem2_platform_create")
        do {
            var options = ivshmem2_device_options()
            ivshmem2_device_options_init(&options)
            try check(ivshmem2_device_attach(platform, bdf.bus, bdf.device, bdf.function, socketPath, &options, &device), "ivshmem2_device_attach")
            try program()
            var host: UnsafeMutableRawPointer?
            try check(ivshmem2_mmio_map(platform, Self.bar0Address, 4096, 0, &host), "ivshmem2_mmio_map")
            window = host
        } catch {
            close()
            throw error
        }
    }

    /// Unmaps the window, detaches the device and destroys the platform; idempotent.
    func close() {
        if let window { _ = ivshmem2_unmap(platform, window) }
        window = nil
        ivshmem2_device_detach(device)
        device = nil
        ivshmem2_platform_destroy(platform)
        platform = nil
    }

    private func check(_ status: Int32, _ call: String) throws {
        guard status == IVSHMEM2_OK.rawValue else { throw BenchError("\(call): \(String(cString: ivshmem2_last_error()))") }
    }

    func configRead(_ offset: Int, _ size: UInt32) throws -> UInt32 {
        var v: UInt32 = 0
        try check(ivshmem2_config_read(platform, bdf.bus, bdf.device, bdf.function, UInt16(offset), size, &v), "ivshmem2_config_read")
        return v
    }

    func configWrite(_ offset: Int, _ size: UInt32, _ value: UInt32) throws {
        try check(ivshmem2_config_write(platform, bdf.bus, bdf.device, bdf.function, UInt16(offset), size, value), "ivshmem2_config_write")
    }

    func mmioWrite(_ address: UInt64, _ value: UInt64) throws {
        try check(ivshmem2_mmio_write(platform, address, 4, value), "ivshmem2_mmio_write")
    }

    /// Sizes BAR `index` with the all-ones probe and places it at `address` (a 64-bit BAR gets
    /// 0 in its upper half). Fails when the BAR is not memory or larger than 1 MiB.
    private func place(bar index: Int, at address: UInt64) throws {
        let reg = 0x10 + index * 4
        try configWrite(reg, 4, 0xFFFF_FFFF)
        let probe = try configRead(reg, 4)
        guard probe & 1 == 0, probe != 0, ~(probe & ~0xF) &+ 1 <= 1 << 20 else {
            throw BenchError("BAR\(index) is not a small memory BAR (probe 0x\(String(probe, radix: 16)))")
        }
        try configWrite(reg, 4, UInt32(address))
        if (probe >> 1) & 0x3 == 0x2 { try configWrite(reg + 4, 4, 0) }
    }

    private func program() throws {
        // The MSI-X capability: walk the list from the Capabilities Pointer.
        var cap = Int(try configRead(0x34, 1) & 0xFC)
        while cap != 0, try configRead(cap, 1) != 0x11 { cap = Int(try configRead(cap + 1, 1) & 0xFC) }
        guard cap != 0 else { throw BenchError("no MSI-X capability") }
        let tableLocation = try configRead(cap + 4, 4)
        let tableBAR = Int(tableLocation & 0x7)
        try place(bar: 0, at: Self.bar0Address)
        let tableBase: UInt64
        if tableBAR == 0 {
            tableBase = Self.bar0Address + UInt64(tableLocation & ~0x7)
        } else {
            try place(bar: tableBAR, at: Self.msixBARAddress)
            tableBase = Self.msixBARAddress + UInt64(tableLocation & ~0x7)
        }
        try configWrite(0x04, 2, try configRead(0x04, 2) | 0x6)             // Memory Space, Bus Master
        try mmioWrite(tableBase, 0xFEE0_0000)                                // entry 0: address low
        try mmioWrite(tableBase + 4, 0)                                      // address high
        try mmioWrite(tableBase + 8, 0)                                      // data
        try mmioWrite(tableBase + 12, 0)                                     // vector control: unmasked
        try configWrite(cap + 2, 2, try configRead(cap + 2, 2) | 0x8000)     // MSI-X Enable
        try mmioWrite(Self.bar0Address + 0x08, 1)                            // Interrupt Control
    }
}

/// Device A of a round trip as a C API device that rings through its trapped BAR0 window; its
/// interrupts arrive through the C API's callback (on the device's event-loop thread).
final class TrappedWindowSide: RingingSide {
    let device: CAPIDevice
    private var trip: RoundTrip?

    init(socketPath: String) throws { device = try CAPIDevice(socketPath: socketPath) }

    func waitForPeer(_ id: UInt32, timeout: Double) -> Bool {
        ivshmem2_device_wait_peers(device.device, 2, Int32(timeout * 1000)) == IVSHMEM2_OK.rawValue
    }

    func connect(_ trip: RoundTrip, to peer: UInt32) {
        self.trip = trip
        let doorbell = device.window! + 0x0C
        let value = BAR0Registers.doorbellValue(peer: peer, vector: 0)
        trip.ring = { cb_store32(doorbell, value) }
        let handler: ivshmem2_interrupt_fn = { context, irq in
            guard let context, let irq, irq.pointee.kind == UInt8(IVSHMEM2_IRQ_MSIX) else { return }
            Unmanaged<RoundTrip>.fromOpaque(context).takeUnretainedValue().arrived()
        }
        _ = ivshmem2_set_interrupt_handler(device.platform, handler, Unmanaged.passUnretained(trip).toOpaque())
    }

    func close() {
        _ = ivshmem2_set_interrupt_handler(device.platform, nil, nil)
        device.close()
        trip = nil
    }
}

struct TrappedAccessResult {
    var name: String
    /// ns per access through the trapped window.
    var trappedNS: Double
    /// ns per access through the accessor call at the same physical address.
    var accessorNS: Double
    var accessor: String
    var valuesAgree: Bool
}

/// The per-access cost of a trapped window: a 32-bit load of the ID register and a 32-bit
/// store to Interrupt Control (no side effect: it stays enabled), each through the window and
/// through `ivshmem2_mmio_read`/`_write`, on one C API device attached to a server thread.
struct TrappedAccessBench {
    let seconds: Double

    func run() throws -> [TrappedAccessResult] {
        let server = try benchServer()
        defer { server.stop() }
        let device = try CAPIDevice(socketPath: server.socketPath)
        defer { device.close() }
        let window = device.window!
        let platform = device.platform
        let id = CAPIDevice.bar0Address, control = CAPIDevice.bar0Address + 0x08

        var checksum: UInt64 = 0
        let trappedRead = perAccess { n in Double(cb_load32_bench(window, n, &checksum)) }
        let accessorRead = perAccess { n in
            var v: UInt64 = 0
            let t0 = nowNS()
            for _ in 0..<n { _ = ivshmem2_mmio_read(platform, id, 4, &v) }
            return Double(nowNS() - t0)
        }
        // The window and the accessor read the same register: one access each must agree.
        var viaWindow: UInt64 = 0, viaAccessor: UInt64 = 0
        _ = cb_load32_bench(window, 1, &viaWindow)
        _ = ivshmem2_mmio_read(platform, id, 4, &viaAccessor)

        let trappedWrite = perAccess { n in Double(cb_store32_bench(window + 0x08, 1, n)) }
        let accessorWrite = perAccess { n in
            let t0 = nowNS()
            for _ in 0..<n { _ = ivshmem2_mmio_write(platform, control, 4, 1) }
            return Double(nowNS() - t0)
        }
        var controlAfter: UInt64 = 0
        _ = ivshmem2_mmio_read(platform, control, 4, &controlAfter)
        return [
            TrappedAccessResult(name: "32-bit register read (ID)", trappedNS: trappedRead, accessorNS: accessorRead,
                                accessor: "ivshmem2_mmio_read", valuesAgree: viaWindow == viaAccessor),
            TrappedAccessResult(name: "32-bit register write (Interrupt Control)", trappedNS: trappedWrite, accessorNS: accessorWrite,
                                accessor: "ivshmem2_mmio_write", valuesAgree: controlAfter == 1),
        ]
    }

    /// ns per access of `body(n)` (which returns the ns n accesses took), n grown until one
    /// pass takes 50 ms, then scaled to `seconds`.
    private func perAccess(_ body: (Int) -> Double) -> Double {
        var n = 100
        while true {
            let t = body(n)
            if t > 50e6 {
                let m = max(1, Int(Double(n) * seconds * 1e9 / t))
                return body(m) / Double(m)
            }
            n *= 4
        }
    }
}
