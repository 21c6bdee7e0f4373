#if canImport(Glibc)
import Glibc
#endif
import CIvshmemTrap
import IvshmemModel
import IvshmemPlatform
import IvshmemServer
import IvshmemTransport
import IvshmemSync

/// The objects behind the C handles. A handle is `Unmanaged.passRetained(box).toOpaque()`.

/// One host mapping made by `ivshmem2_mmio_map` / `ivshmem2_shm_map`.
struct HostMapping {
    var base: UInt
    var length: Int
}

final class PlatformBox: @unchecked Sendable {
    let platform: PCIPlatform
    struct Callback: @unchecked Sendable {
        var fn: ivshmem2_interrupt_fn?
        var context: UnsafeMutableRawPointer?
    }
    let interruptCallback = Locked(Callback())
    let devices = Locked<[DeviceBox]>([])
    let mappings = Locked<[UInt: HostMapping]>([:])
    struct AccessHook: @unchecked Sendable {
        var fn: ivshmem2_access_fn?
        var context: UnsafeMutableRawPointer?
    }
    /// ivshmem2_set_access_hook: called after each access the trap handler emulates.
    let accessHook = Locked(AccessHook())
    /// ivshmem2_firmware_assign's allocator: one per platform, so devices do not overlap.
    let firmware = Locked(Firmware())

    init(ecamBase: UInt64) {
        platform = PCIPlatform(ecamBase: ecamBase)
        platform.interrupts.addHandler { [weak self] record in
            guard let self else { return }
            let cb = self.interruptCallback.withLock { $0 }
            guard let fn = cb.fn else { return }
            var irq = ivshmem2_interrupt.from(record)
            fn(cb.context, &irq)
        }
    }

    var handle: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }
    var trapContext: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }
}

final class DeviceBox: @unchecked Sendable {
    let link: AttachedDevice
    let bdf: BDF
    let platform: PlatformBox
    struct Callback: @unchecked Sendable {
        var fn: ivshmem2_finding_fn?
        var context: UnsafeMutableRawPointer?
    }
    let findingCallback = Locked(Callback())
    let detached = Locked(false)

    init(link: AttachedDevice, bdf: BDF, platform: PlatformBox) {
        self.link = link
        self.bdf = bdf
        self.platform = platform
        link.device.onFinding { [weak self] finding in
            guard let self else { return }
            let cb = self.findingCallback.withLock { $0 }
            guard let fn = cb.fn else { return }
            var f = ivshmem2_finding.from(finding)
            fn(cb.context, &f)
        }
    }

    /// Unplugs and closes the link; idempotent.
    func detach() {
        let first = detached.withLock { d -> Bool in
            defer { d = true }
            return !d
        }
        guard first else { return }
        link.device.onFinding(nil)
        platform.platform.remove(at: bdf)
        link.close()
    }
}

final class ServerBox: @unchecked Sendable {
    let thread: ServerThread
    let socketPath: UnsafeMutablePointer<CChar>
    let privateDirectory: String?

    init(thread: ServerThread, socketPath: String, privateDirectory: String?) {
        self.thread = thread
        self.socketPath = strdup(socketPath)!
        self.privateDirectory = privateDirectory
    }

    deinit { free(socketPath) }
}

// MARK: handle conversion

func box<T: AnyObject>(_ handle: OpaquePointer?, as: T.Type) -> T? {
    guard let handle else { return nil }
    return Unmanaged<T>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
}

func retainedHandle<T: AnyObject>(_ object: T) -> OpaquePointer {
    OpaquePointer(Unmanaged.passRetained(object).toOpaque())
}

func release<T: AnyObject>(_ handle: OpaquePointer, as: T.Type) {
    Unmanaged<T>.fromOpaque(UnsafeRawPointer(handle)).release()
}

// MARK: errors

/// Sets the thread-local last error and returns `status`.
@discardableResult
func fail(_ status: ivshmem2_status, _ message: String) -> Int32 {
    ivs_set_error(message)
    return status.rawValue
}

let OK: Int32 = IVSHMEM2_OK.rawValue

// MARK: C structs from Swift values

func copyCString(_ s: String, into tuple: UnsafeMutableRawBufferPointer) {
    let capacity = tuple.count
    guard capacity > 0 else { return }
    var utf8 = Array(s.utf8)
    if utf8.count > capacity - 1 {
        // Truncate on a character boundary where possible.
        var n = capacity - 1
        while n > 0 && utf8[n] & 0xC0 == 0x80 { n -= 1 }
        utf8 = Array(utf8[0..<n])
    }
    for (i, b) in utf8.enumerated() { tuple[i] = b }
    tuple[utf8.count] = 0
}

extension ivshmem2_interrupt {
    static func from(_ r: InterruptRecord) -> ivshmem2_interrupt {
        var irq = ivshmem2_interrupt()
        irq.sequence = UInt64(r.sequence)
        irq.time_ns = r.time
        irq.bus = r.source.bus
        irq.device = r.source.device
        irq.function = r.source.function
        switch r.kind {
        case .msix(let vector, let address, let data):
            irq.kind = UInt8(IVSHMEM2_IRQ_MSIX)
            irq.vector = UInt32(truncatingIfNeeded: vector)
            irq.address = address
            irq.data = data
        case .intx(let pin):
            irq.kind = UInt8(IVSHMEM2_IRQ_INTX)
            irq.pin = pin
        }
        return irq
    }
}

extension ivshmem2_finding {
    static func from(_ f: Finding) -> ivshmem2_finding {
        var out = ivshmem2_finding()
        withUnsafeMutableBytes(of: &out.requirement) { copyCString(f.requirement, into: $0) }
        withUnsafeMutableBytes(of: &out.message) { copyCString(f.message, into: $0) }
        switch f.kind {
        case .violation: out.kind = Int32(IVSHMEM2_FINDING_VIOLATION)
        case .ineffective: out.kind = Int32(IVSHMEM2_FINDING_INEFFECTIVE)
        case .environment: out.kind = Int32(IVSHMEM2_FINDING_ENVIRONMENT)
        }
        out.peer = f.peer
        if let a = f.access {
            switch a.space {
            case .config: out.space = Int32(IVSHMEM2_SPACE_CONFIG)
            case .bar(let n):
                out.space = Int32(IVSHMEM2_SPACE_BAR)
                out.bar = Int32(n)
            case .sharedMemory: out.space = Int32(IVSHMEM2_SPACE_SHM)
            }
            out.offset = a.offset
            out.size = UInt32(max(a.size, 0))
            out.is_write = a.isWrite ? 1 : 0
            if let v = a.value {
                out.has_value = 1
                out.value = v
            }
        } else {
            out.space = Int32(IVSHMEM2_SPACE_NONE)
        }
        return out
    }
}

/// A failed step carrying the status code already reported through `fail`.
struct Status: Error { let code: Int32 }
