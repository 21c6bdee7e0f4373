#if canImport(Glibc)
import Glibc
#endif
import CIvshmemTrap
import IvshmemModel
import IvshmemPlatform
import IvshmemPosix
import IvshmemServer
import IvshmemTransport
import Logging

// The C API of libivshmem2 (include/ivshmem2.h). Every export catches every Swift error and
// validates every argument first, so that nothing traps: failures become status codes plus the
// thread-local last-error string.

private let pageSize: UInt64 = 4096

// MARK: platform

@_cdecl("ivshmem2_platform_create")
public func ivs_c_platform_create(_ ecamBase: UInt64, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guard let out else { return fail(IVSHMEM2_EINVAL, "ivshmem2_platform_create: out is NULL") }
    let base = ecamBase == 0 ? UInt64(IVSHMEM2_DEFAULT_ECAM_BASE) : ecamBase
    guard base % (1 << 20) == 0, base <= UInt64.max - PCIPlatform.ecamSize else {
        return fail(IVSHMEM2_EINVAL, "ivshmem2_platform_create: ECAM base 0x\(String(base, radix: 16)) is not 1 MiB aligned")
    }
    out.pointee = retainedHandle(PlatformBox(ecamBase: base))
    return OK
}

@_cdecl("ivshmem2_platform_destroy")
public func ivs_c_platform_destroy(_ handle: OpaquePointer?) {
    guard let handle, let p = box(handle, as: PlatformBox.self) else { return }
    p.interruptCallback.withLock { $0 = PlatformBox.Callback() }
    for d in p.devices.withLock({ $0 }) { d.detach() }
    p.devices.withLock { $0.removeAll() }
    _ = ivs_trap_unregister(p.trapContext, nil, 0)
    for m in p.mappings.withLock({ $0.values }) { _ = ivs_unmap(UnsafeMutableRawPointer(bitPattern: m.base), m.length) }
    p.mappings.withLock { $0.removeAll() }
    release(handle, as: PlatformBox.self)
}

@_cdecl("ivshmem2_platform_ecam_base")
public func ivs_c_platform_ecam_base(_ handle: OpaquePointer?) -> UInt64 {
    box(handle, as: PlatformBox.self)?.platform.ecamBase ?? 0
}

// MARK: embedded server

@_cdecl("ivshmem2_server_start")
public func ivs_c_server_start(_ options: UnsafePointer<ivshmem2_server_options>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guard let out else { return fail(IVSHMEM2_EINVAL, "ivshmem2_server_start: out is NULL") }
    var o = ivshmem2_server_options()
    if let options { o = options.pointee } else { ivshmem2_server_options_init(&o) }
    var config = ServerConfiguration()
    config.backing = .memfd
    config.size = o.shm_size == 0 ? ServerConfiguration.defaultSize : o.shm_size
    config.outputSectionSize = o.output_section_size
    config.maxPeers = o.max_peers == 0 ? 2 : UInt64(o.max_peers)
    config.vectors = o.vectors == 0 ? 1 : UInt64(o.vectors)
    config.protocolValue = UInt64(o.protocol)
    var directory: String? = nil
    if let path = o.socket_path {
        config.socketPath = String(cString: path)
    } else {
        do { directory = try FileSystem.makeTemporaryDirectory(template: "/tmp/ivshmem2-lib.XXXXXX") } catch {
            return fail(IVSHMEM2_ESYSTEM, "ivshmem2_server_start: cannot create a private directory: \(error)")
        }
        config.socketPath = directory! + "/ivshmem.sock"
    }
    let level: Logger.Level = o.verbose != 0 ? .info : .critical
    let logger = Logger(label: "ivshmem2.embedded-server") { label in StderrLogHandler(label: label, logLevel: level) }
    do {
        let thread = try ServerThread.start(configuration: config, logger: logger)
        out.pointee = retainedHandle(ServerBox(thread: thread, socketPath: config.socketPath, privateDirectory: directory))
        return OK
    } catch let e as ConfigurationError {
        if let directory { FileSystem.removeDirectoryTree(directory) }
        return fail(IVSHMEM2_EINVAL, "ivshmem2_server_start: invalid \(e)")
    } catch {
        if let directory { FileSystem.removeDirectoryTree(directory) }
        return fail(IVSHMEM2_ESYSTEM, "ivshmem2_server_start: \(error)")
    }
}

@_cdecl("ivshmem2_server_socket_path")
public func ivs_c_server_socket_path(_ handle: OpaquePointer?) -> UnsafePointer<CChar>? {
    guard let s = box(handle, as: ServerBox.self) else { return nil }
    return UnsafePointer(s.socketPath)
}

@_cdecl("ivshmem2_server_stop")
public func ivs_c_server_stop(_ handle: OpaquePointer?) {
    guard let handle, let s = box(handle, as: ServerBox.self) else { return }
    s.thread.stop()
    if let d = s.privateDirectory { FileSystem.removeDirectoryTree(d) }
    release(handle, as: ServerBox.self)
}

// MARK: devices

func makeBDF(_ bus: UInt8, _ device: UInt8, _ function: UInt8, _ call: String) -> Result<BDF, Status> {
    do { return .success(try BDF(bus: bus, device: device, function: function)) } catch {
        return .failure(Status(code: fail(IVSHMEM2_EINVAL, "\(call): \(error)")))
    }
}

@_cdecl("ivshmem2_device_attach")
public func ivs_c_device_attach(
    _ platformHandle: OpaquePointer?, _ bus: UInt8, _ dev: UInt8, _ fn: UInt8, _ socketPath: UnsafePointer<CChar>?,
    _ options: UnsafePointer<ivshmem2_device_options>?, _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    let call = "ivshmem2_device_attach"
    guard let p = box(platformHandle, as: PlatformBox.self) else { return fail(IVSHMEM2_EINVAL, "\(call): platform is NULL") }
    guard let out else { return fail(IVSHMEM2_EINVAL, "\(call): out is NULL") }
    guard let socketPath else { return fail(IVSHMEM2_EINVAL, "\(call): socket path is NULL") }
    let bdf: BDF
    switch makeBDF(bus, dev, fn, call) {
    case .success(let b): bdf = b
    case .failure(let status): return status.code
    }
    var o = ivshmem2_device_options()
    if let options { o = options.pointee } else { ivshmem2_device_options_init(&o) }
    let profile = o.profile.map { String(cString: $0) } ?? "spec"
    guard Profile.builtInNames.contains(profile) else {
        return fail(IVSHMEM2_EINVAL, "\(call): unknown profile '\(profile)' (known: \(Profile.builtInNames.joined(separator: ", ")))")
    }
    guard (0...4).contains(o.intx_pin) else { return fail(IVSHMEM2_EINVAL, "\(call): intx_pin must be 0 (MSI-X) or 1..4, got \(o.intx_pin)") }
    guard p.platform.device(at: bdf) == nil else { return fail(IVSHMEM2_EBUSY, "\(call): a device is already present at \(bdf)") }
    let attachOptions = AttachOptions(
        profile: profile, interrupts: o.intx_pin == 0 ? .msix : .intx(pin: UInt8(o.intx_pin)),
        registerSpace: o.io_registers != 0 ? .io : .memory, checking: o.checking != 0)
    var withBase = attachOptions
    withBase.baseAddress = o.base_address == 0 ? nil : o.base_address
    let link: AttachedDevice
    do { link = try AttachedDevice.attach(socketPath: String(cString: socketPath), options: withBase) } catch {
        return fail(IVSHMEM2_ECONNECT, "\(call): \(error)")
    }
    let d = DeviceBox(link: link, bdf: bdf, platform: p)
    do { try p.platform.add(link.device, at: bdf) } catch {
        link.device.onFinding(nil)
        link.close()
        return fail(IVSHMEM2_EBUSY, "\(call): \(error)")
    }
    p.devices.withLock { $0.append(d) }
    out.pointee = retainedHandle(d)
    return OK
}

@_cdecl("ivshmem2_device_detach")
public func ivs_c_device_detach(_ handle: OpaquePointer?) {
    guard let handle, let d = box(handle, as: DeviceBox.self) else { return }
    d.detach()
    d.platform.devices.withLock { $0.removeAll { $0 === d } }
    release(handle, as: DeviceBox.self)
}

@_cdecl("ivshmem2_device_get_info")
public func ivs_c_device_get_info(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<ivshmem2_device_info>?) -> Int32 {
    guard let d = box(handle, as: DeviceBox.self), let out else { return fail(IVSHMEM2_EINVAL, "ivshmem2_device_get_info: NULL argument") }
    let dev = d.link.device
    let g = dev.layout.geometry
    var info = ivshmem2_device_info()
    info.bus = d.bdf.bus
    info.device = d.bdf.device
    info.function = d.bdf.function
    info.id = dev.id
    info.max_peers = dev.configuration.maxPeers
    info.vectors = UInt32(dev.configuration.vectors)
    info.protocol = UInt32(dev.configuration.protocolType)
    info.shm_size = g.totalSize
    info.state_table_size = g.stateTableSize
    info.rw_section_size = g.rwSectionSize
    info.output_section_size = g.outputSectionSize
    info.base_address = dev.configuration.baseAddress
    info.shm_in_bar2 = dev.profile.sharedMemoryInBAR2 ? 1 : 0
    out.pointee = info
    return OK
}

@_cdecl("ivshmem2_device_wait_peers")
public func ivs_c_device_wait_peers(_ handle: OpaquePointer?, _ count: UInt32, _ timeoutMs: Int32) -> Int32 {
    guard let d = box(handle, as: DeviceBox.self) else { return fail(IVSHMEM2_EINVAL, "ivshmem2_device_wait_peers: device is NULL") }
    let want = Int(count)
    if timeoutMs < 0 {
        while !d.link.waitForPeers(timeout: 3600, { $0.count >= want }) {}
        return OK
    }
    if d.link.waitForPeers(timeout: Double(timeoutMs) / 1000, { $0.count >= want }) { return OK }
    return fail(IVSHMEM2_ETIMEDOUT, "ivshmem2_device_wait_peers: \(d.link.activePeers.count) of \(count) peers active after \(timeoutMs) ms")
}

@_cdecl("ivshmem2_device_link_up")
public func ivs_c_device_link_up(_ handle: OpaquePointer?) -> Int32 {
    guard let d = box(handle, as: DeviceBox.self) else { return 0 }
    return d.link.isLinkUp ? 1 : 0
}

@_cdecl("ivshmem2_device_reset")
public func ivs_c_device_reset(_ handle: OpaquePointer?) -> Int32 {
    guard let d = box(handle, as: DeviceBox.self) else { return fail(IVSHMEM2_EINVAL, "ivshmem2_device_reset: device is NULL") }
    d.link.device.reset()
    return OK
}

// MARK: config, MMIO, port I/O

@_cdecl("ivshmem2_config_read")
public func ivs_c_config_read(_ handle: OpaquePointer?, _ bus: UInt8, _ dev: UInt8, _ fn: UInt8, _ offset: UInt16, _ size: UInt32, _ value: UnsafeMutablePointer<UInt32>?) -> Int32 {
    let call = "ivshmem2_config_read"
    guard let p = box(handle, as: PlatformBox.self), let value else { return fail(IVSHMEM2_EINVAL, "\(call): NULL argument") }
    guard [1, 2, 4].contains(size) else { return fail(IVSHMEM2_EINVAL, "\(call): size must be 1, 2 or 4, got \(size)") }
    guard offset < 4096 else { return fail(IVSHMEM2_EINVAL, "\(call): offset 0x\(String(offset, radix: 16)) is beyond 4 KiB") }
    switch makeBDF(bus, dev, fn, call) {
    case .failure(let s): return s.code
    case .success(let bdf):
        value.pointee = p.platform.configRead(bdf, offset: Int(offset), size: Int(size))
        return OK
    }
}

@_cdecl("ivshmem2_config_write")
public func ivs_c_config_write(_ handle: OpaquePointer?, _ bus: UInt8, _ dev: UInt8, _ fn: UInt8, _ offset: UInt16, _ size: UInt32, _ value: UInt32) -> Int32 {
    let call = "ivshmem2_config_write"
    guard let p = box(handle, as: PlatformBox.self) else { return fail(IVSHMEM2_EINVAL, "\(call): platform is NULL") }
    guard [1, 2, 4].contains(size) else { return fail(IVSHMEM2_EINVAL, "\(call): size must be 1, 2 or 4, got \(size)") }
    guard offset < 4096 else { return fail(IVSHMEM2_EINVAL, "\(call): offset 0x\(String(offset, radix: 16)) is beyond 4 KiB") }
    switch makeBDF(bus, dev, fn, call) {
    case .failure(let s): return s.code
    case .success(let bdf):
        p.platform.configWrite(bdf, offset: Int(offset), size: Int(size), value: value)
        return OK
    }
}

@_cdecl("ivshmem2_mmio_read")
public func ivs_c_mmio_read(_ handle: OpaquePointer?, _ address: UInt64, _ size: UInt32, _ value: UnsafeMutablePointer<UInt64>?) -> Int32 {
    guard let p = box(handle, as: PlatformBox.self), let value else { return fail(IVSHMEM2_EINVAL, "ivshmem2_mmio_read: NULL argument") }
    guard [1, 2, 4, 8].contains(size) else { return fail(IVSHMEM2_EINVAL, "ivshmem2_mmio_read: size must be 1, 2, 4 or 8, got \(size)") }
    value.pointee = p.platform.mmioRead(address, size: Int(size))
    return OK
}

@_cdecl("ivshmem2_mmio_write")
public func ivs_c_mmio_write(_ handle: OpaquePointer?, _ address: UInt64, _ size: UInt32, _ value: UInt64) -> Int32 {
    guard let p = box(handle, as: PlatformBox.self) else { return fail(IVSHMEM2_EINVAL, "ivshmem2_mmio_write: platform is NULL") }
    guard [1, 2, 4, 8].contains(size) else { return fail(IVSHMEM2_EINVAL, "ivshmem2_mmio_write: size must be 1, 2, 4 or 8, got \(size)") }
    p.platform.mmioWrite(address, size: Int(size), value: value)
    return OK
}

@_cdecl("ivshmem2_io_read")
public func ivs_c_io_read(_ handle: OpaquePointer?, _ port: UInt16, _ size: UInt32, _ value: UnsafeMutablePointer<UInt32>?) -> Int32 {
    guard let p = box(handle, as: PlatformBox.self), let value else { return fail(IVSHMEM2_EINVAL, "ivshmem2_io_read: NULL argument") }
    guard [1, 2, 4].contains(size) else { return fail(IVSHMEM2_EINVAL, "ivshmem2_io_read: size must be 1, 2 or 4, got \(size)") }
    value.pointee = p.platform.ioRead(port, size: Int(size))
    return OK
}

@_cdecl("ivshmem2_io_write")
public func ivs_c_io_write(_ handle: OpaquePointer?, _ port: UInt16, _ size: UInt32, _ value: UInt32) -> Int32 {
    guard let p = box(handle, as: PlatformBox.self) else { return fail(IVSHMEM2_EINVAL, "ivshmem2_io_write: platform is NULL") }
    guard [1, 2, 4].contains(size) else { return fail(IVSHMEM2_EINVAL, "ivshmem2_io_write: size must be 1, 2 or 4, got \(size)") }
    p.platform.ioWrite(port, size: Int(size), value: value)
    return OK
}

// MARK: trapped windows and the shared-memory view

/// Called by the C fault handler (on the faulting thread, in signal context) for each access
/// in an MMIO window.
private let trapAccess: @convention(c) (UnsafeMutableRawPointer?, UInt64, UInt32, Int32, UnsafeMutablePointer<UInt64>?) -> Void = {
    context, phys, size, isWrite, value in
    forwardTrapped(context, phys, size, isWrite, value, source: IVSHMEM2_ACCESS_MMIO_WINDOW)
}

/// The same for the trapped stores of a shared-memory view's read-only sections.
private let trapViewAccess: @convention(c) (UnsafeMutableRawPointer?, UInt64, UInt32, Int32, UnsafeMutablePointer<UInt64>?) -> Void = {
    context, phys, size, isWrite, value in
    forwardTrapped(context, phys, size, isWrite, value, source: IVSHMEM2_ACCESS_SHM_VIEW)
}

private func forwardTrapped(_ context: UnsafeMutableRawPointer?, _ phys: UInt64, _ size: UInt32, _ isWrite: Int32, _ value: UnsafeMutablePointer<UInt64>?, source: Int) {
    guard let context, let value else { return }
    let p = Unmanaged<PlatformBox>.fromOpaque(context).takeUnretainedValue()
    if isWrite != 0 {
        p.platform.mmioWrite(phys, size: Int(size), value: value.pointee)
    } else {
        value.pointee = p.platform.mmioRead(phys, size: Int(size))
    }
    let hook = p.accessHook.withLock { $0 }
    if let fn = hook.fn {
        var a = ivshmem2_access(source: Int32(source), address: phys, size: size, is_write: isWrite, value: value.pointee)
        fn(hook.context, &a)
    }
}

private let userSpaceLimit: UInt64 = 0x7FFF_FFFF_F000

private func reserve(_ phys: UInt64, _ length: UInt64, atPhys: Bool, _ call: String) -> Result<UnsafeMutableRawPointer, Status> {
    if atPhys {
        guard phys != 0, phys < userSpaceLimit, length <= userSpaceLimit - phys else {
            return .failure(Status(code: fail(IVSHMEM2_EINVAL, "\(call): 0x\(String(phys, radix: 16)) + 0x\(String(length, radix: 16)) is not a user-space host address range")))
        }
    }
    guard let r = ivs_map_reserve(atPhys ? UnsafeMutableRawPointer(bitPattern: UInt(phys)) : nil, Int(length), atPhys ? 1 : 0) else {
        let e = errno
        if e == EEXIST {
            return .failure(Status(code: fail(IVSHMEM2_EBUSY, "\(call): host range 0x\(String(phys, radix: 16))..+0x\(String(length, radix: 16)) is already mapped in this process")))
        }
        return .failure(Status(code: fail(IVSHMEM2_ESYSTEM, "\(call): mmap failed: \(String(cString: strerror(e)))")))
    }
    return .success(r)
}

@_cdecl("ivshmem2_mmio_map")
public func ivs_c_mmio_map(_ handle: OpaquePointer?, _ phys: UInt64, _ length: UInt64, _ flags: Int32, _ out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32 {
    let call = "ivshmem2_mmio_map"
    guard let p = box(handle, as: PlatformBox.self), let out else { return fail(IVSHMEM2_EINVAL, "\(call): NULL argument") }
    guard length > 0, length <= 1 << 40, phys <= UInt64.max - length - pageSize else {
        return fail(IVSHMEM2_EINVAL, "\(call): length 0x\(String(length, radix: 16)) at 0x\(String(phys, radix: 16)) must be non-zero and at most 1 TiB")
    }
    // An unaligned range is served by the pages that enclose it (drivers map a 32-byte table).
    let first = phys & ~(pageSize - 1)
    let span = (phys + length - first + pageSize - 1) & ~(pageSize - 1)
    let host: UnsafeMutableRawPointer
    switch reserve(first, span, atPhys: flags & Int32(IVSHMEM2_MAP_AT_PHYS) != 0, call) {
    case .failure(let s): return s.code
    case .success(let h): host = h
    }
    let status = ivs_trap_register(host, Int(span), first, Int32(IVS_WINDOW_MMIO), trapAccess, p.trapContext, p.trapContext)
    guard status == OK else {
        _ = ivs_unmap(host, Int(span))
        return status
    }
    p.mappings.withLock { $0[UInt(bitPattern: host)] = HostMapping(base: UInt(bitPattern: host), length: Int(span)) }
    out.pointee = host + Int(phys - first)
    return OK
}

@_cdecl("ivshmem2_shm_map")
public func ivs_c_shm_map(_ handle: OpaquePointer?, _ phys: UInt64, _ length: UInt64, _ flags: Int32, _ out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32 {
    let call = "ivshmem2_shm_map"
    guard let p = box(handle, as: PlatformBox.self), let out else { return fail(IVSHMEM2_EINVAL, "\(call): NULL argument") }
    guard phys % pageSize == 0 else { return fail(IVSHMEM2_EINVAL, "\(call): address 0x\(String(phys, radix: 16)) is not page aligned") }
    guard let hit = p.platform.decodeMemory(phys),
        hit.bar < 0 || hit.device.layout.bars.first(where: { $0.index == hit.bar })?.role == .sharedMemory
    else {
        return fail(IVSHMEM2_ENODEV, "\(call): 0x\(String(phys, radix: 16)) does not decode to shared memory (is BAR2 programmed and Memory Space on?)")
    }
    let device = hit.device
    let total = device.layout.geometry.totalSize
    guard hit.offset < total else { return fail(IVSHMEM2_EINVAL, "\(call): 0x\(String(phys, radix: 16)) is in BAR2's tail beyond the shared memory") }
    let available = total - hit.offset
    let want = length == 0 ? available : (length + pageSize - 1) / pageSize * pageSize
    guard want <= available else {
        return fail(IVSHMEM2_EINVAL, "\(call): 0x\(String(length, radix: 16)) bytes from shared-memory offset 0x\(String(hit.offset, radix: 16)) go beyond its 0x\(String(total, radix: 16)) bytes")
    }
    guard Int(hit.offset) + Int(want) <= device.sharedMemory.size else {
        return fail(IVSHMEM2_EINVAL, "\(call): the backing memory is smaller than the layout")
    }
    let atPhys = flags & Int32(IVSHMEM2_MAP_AT_PHYS) != 0
    var reservation: UnsafeMutableRawPointer? = nil
    if atPhys {
        switch reserve(phys, want, atPhys: true, call) {
        case .failure(let s): return s.code
        case .success(let r): reservation = r
        }
    }
    guard let view = ivs_map_alias(device.sharedMemory.base + Int(hit.offset), Int(want), reservation) else {
        let e = errno
        if let reservation { _ = ivs_unmap(reservation, Int(want)) }
        return fail(IVSHMEM2_ESYSTEM, "\(call): mremap of the shared memory failed: \(String(cString: strerror(e)))")
    }
    // Read-only sections: PROT_READ, and a trap window that turns plain stores into the model's
    // refused write (finding, nothing changed).
    let start = hit.offset, end = hit.offset + want
    for s in device.sharedMemoryLayout.sections where s.access == .readOnly {
        let lo = max(s.offset, start), hi = min(s.offset + s.size, end)
        guard lo < hi else { continue }
        let at = view + Int(lo - start)
        if ivs_protect(at, Int(hi - lo), 0) != 0 {
            let e = errno
            _ = ivs_trap_unregister(p.trapContext, view, Int(want))
            _ = ivs_unmap(view, Int(want))
            return fail(IVSHMEM2_ESYSTEM, "\(call): mprotect failed: \(String(cString: strerror(e)))")
        }
        let status = ivs_trap_register(at, Int(hi - lo), phys + (lo - start), Int32(IVS_WINDOW_READONLY), trapViewAccess, p.trapContext, p.trapContext)
        guard status == OK else {
            _ = ivs_trap_unregister(p.trapContext, view, Int(want))
            _ = ivs_unmap(view, Int(want))
            return status
        }
    }
    p.mappings.withLock { $0[UInt(bitPattern: view)] = HostMapping(base: UInt(bitPattern: view), length: Int(want)) }
    out.pointee = view
    return OK
}

@_cdecl("ivshmem2_unmap")
public func ivs_c_unmap(_ handle: OpaquePointer?, _ host: UnsafeMutableRawPointer?) -> Int32 {
    guard let p = box(handle, as: PlatformBox.self), let host else { return fail(IVSHMEM2_EINVAL, "ivshmem2_unmap: NULL argument") }
    // The address ivshmem2_mmio_map returned may lie inside the enclosing pages it mapped.
    let at = UInt(bitPattern: host)
    guard let m = p.mappings.withLock({ maps -> HostMapping? in
        guard let key = maps.first(where: { at >= $0.value.base && at < $0.value.base + UInt($0.value.length) })?.key else { return nil }
        return maps.removeValue(forKey: key)
    }) else {
        return fail(IVSHMEM2_ENODEV, "ivshmem2_unmap: \(host) is not a mapping made by this platform")
    }
    let base = UnsafeMutableRawPointer(bitPattern: m.base)!
    _ = ivs_trap_unregister(p.trapContext, base, m.length)
    _ = ivs_unmap(base, m.length)
    return OK
}

// MARK: interrupts

@_cdecl("ivshmem2_set_interrupt_handler")
public func ivs_c_set_interrupt_handler(_ handle: OpaquePointer?, _ fn: ivshmem2_interrupt_fn?, _ context: UnsafeMutableRawPointer?) -> Int32 {
    guard let p = box(handle, as: PlatformBox.self) else { return fail(IVSHMEM2_EINVAL, "ivshmem2_set_interrupt_handler: platform is NULL") }
    p.interruptCallback.withLock { $0 = PlatformBox.Callback(fn: fn, context: context) }
    return OK
}

@_cdecl("ivshmem2_wait_interrupt")
public func ivs_c_wait_interrupt(_ handle: OpaquePointer?, _ cursor: UnsafeMutablePointer<UInt64>?, _ timeoutMs: Int32, _ out: UnsafeMutablePointer<ivshmem2_interrupt>?) -> Int32 {
    guard let p = box(handle, as: PlatformBox.self), let cursor, let out else { return fail(IVSHMEM2_EINVAL, "ivshmem2_wait_interrupt: NULL argument") }
    let after = Int(clamping: cursor.pointee)
    var record: InterruptRecord? = nil
    if timeoutMs < 0 {
        while record == nil { record = p.platform.interrupts.wait(after: after, timeout: 3600) }
    } else {
        record = p.platform.interrupts.wait(after: after, timeout: Double(timeoutMs) / 1000)
    }
    guard let record else { return fail(IVSHMEM2_ETIMEDOUT, "ivshmem2_wait_interrupt: no interrupt within \(timeoutMs) ms") }
    out.pointee = ivshmem2_interrupt.from(record)
    cursor.pointee = UInt64(record.sequence) + 1
    return OK
}

@_cdecl("ivshmem2_interrupt_count")
public func ivs_c_interrupt_count(_ handle: OpaquePointer?) -> UInt64 {
    guard let p = box(handle, as: PlatformBox.self) else { return 0 }
    return UInt64(p.platform.interrupts.count)
}

// MARK: findings

@_cdecl("ivshmem2_finding_count")
public func ivs_c_finding_count(_ handle: OpaquePointer?) -> Int {
    guard let d = box(handle, as: DeviceBox.self) else { return 0 }
    return d.link.device.findings.count
}

@_cdecl("ivshmem2_get_finding")
public func ivs_c_get_finding(_ handle: OpaquePointer?, _ index: Int, _ out: UnsafeMutablePointer<ivshmem2_finding>?) -> Int32 {
    guard let d = box(handle, as: DeviceBox.self), let out else { return fail(IVSHMEM2_EINVAL, "ivshmem2_get_finding: NULL argument") }
    let all = d.link.device.findings
    guard index >= 0, index < all.count else { return fail(IVSHMEM2_ENOSPC, "ivshmem2_get_finding: index \(index), but there are \(all.count) findings") }
    out.pointee = ivshmem2_finding.from(all[index])
    return OK
}

@_cdecl("ivshmem2_clear_findings")
public func ivs_c_clear_findings(_ handle: OpaquePointer?) -> Int32 {
    guard let d = box(handle, as: DeviceBox.self) else { return fail(IVSHMEM2_EINVAL, "ivshmem2_clear_findings: device is NULL") }
    d.link.device.clearFindings()
    return OK
}

@_cdecl("ivshmem2_set_finding_handler")
public func ivs_c_set_finding_handler(_ handle: OpaquePointer?, _ fn: ivshmem2_finding_fn?, _ context: UnsafeMutableRawPointer?) -> Int32 {
    guard let d = box(handle, as: DeviceBox.self) else { return fail(IVSHMEM2_EINVAL, "ivshmem2_set_finding_handler: device is NULL") }
    d.findingCallback.withLock { $0 = DeviceBox.Callback(fn: fn, context: context) }
    return OK
}
