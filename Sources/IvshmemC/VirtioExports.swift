import CIvshmemTrap
import CIvshmemVirtioAPI
import IvshmemSync
import IvshmemVirtio

// The virtio front-end driver model of libivshmem2 (ivshmem2_virtio.h): a handle owns one
// VirtioEndpoint with a console or block driver on it; calls on a handle are serialised.

final class VirtioDeviceBox {
    let endpoint: VirtioEndpoint
    let console: ConsoleDriver?
    let block: BlockDriver?
    let lock = Locked(())
    var pending: [UInt8] = []   // console bytes received but not yet handed out

    init(endpoint: VirtioEndpoint, console: ConsoleDriver?, block: BlockDriver?) {
        self.endpoint = endpoint
        self.console = console
        self.block = block
    }
}

private func seconds(_ ms: Int32, default d: Double = 10) -> Double { ms < 0 ? d : Double(ms) / 1000 }

/// Maps a virtio error to a status and the last-error message.
private func virtioFailure(_ call: String, _ error: Error) -> Int32 {
    if let e = error as? VirtioError {
        let timedOut = ["VIRTIO-STATE-2", "VIRTIO-NOTIFY-3", "VIRTIO-WT-3"].contains(e.requirement ?? "")
        return fail(timedOut ? IVSHMEM2_ETIMEDOUT : IVSHMEM2_ESYSTEM, "\(call): \(e)")
    }
    return fail(IVSHMEM2_ECONNECT, "\(call): \(error)")
}

@_cdecl("ivshmem2_virtio_open")
public func ivs_c_virtio_open(_ socketPath: UnsafePointer<CChar>?, _ profile: UnsafePointer<CChar>?, _ timeoutMS: Int32,
                              _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guard let socketPath, let out else { return fail(IVSHMEM2_EINVAL, "ivshmem2_virtio_open: socket_path or out is NULL") }
    let endpoint: VirtioEndpoint
    do {
        endpoint = try VirtioEndpoint.attach(socketPath: String(cString: socketPath), profile: profile.map { String(cString: $0) } ?? "spec")
    } catch {
        return fail(IVSHMEM2_ECONNECT, "ivshmem2_virtio_open: \(error)")
    }
    do {
        let frontend = try VirtioFrontend(endpoint: endpoint)
        let timeout = seconds(timeoutMS)
        switch frontend.deviceID {
        case VirtioDeviceID.console:
            out.pointee = retainedHandle(VirtioDeviceBox(endpoint: endpoint, console: try ConsoleDriver(frontend: frontend, timeout: timeout), block: nil))
        case VirtioDeviceID.block:
            out.pointee = retainedHandle(VirtioDeviceBox(endpoint: endpoint, console: nil, block: try BlockDriver(frontend: frontend, timeout: timeout)))
        default:
            endpoint.close()
            return fail(IVSHMEM2_ENODEV, "ivshmem2_virtio_open: device ID \(frontend.deviceID) (the model drives console 3 and block 2)")
        }
        return OK
    } catch {
        endpoint.close()
        return virtioFailure("ivshmem2_virtio_open", error)
    }
}

@_cdecl("ivshmem2_virtio_close")
public func ivs_c_virtio_close(_ handle: OpaquePointer?) {
    guard let handle, let d = box(handle, as: VirtioDeviceBox.self) else { return }
    d.endpoint.setState(0)
    d.endpoint.close()
    release(handle, as: VirtioDeviceBox.self)
}

@_cdecl("ivshmem2_virtio_device_id")
public func ivs_c_virtio_device_id(_ handle: OpaquePointer?) -> UInt16 {
    guard let d = box(handle, as: VirtioDeviceBox.self) else { return 0 }
    return d.console != nil ? VirtioDeviceID.console : VirtioDeviceID.block
}

@_cdecl("ivshmem2_virtio_console_write")
public func ivs_c_virtio_console_write(_ handle: OpaquePointer?, _ data: UnsafeRawPointer?, _ length: Int, _ timeoutMS: Int32) -> Int32 {
    guard let d = box(handle, as: VirtioDeviceBox.self), data != nil || length == 0 else { return fail(IVSHMEM2_EINVAL, "ivshmem2_virtio_console_write: NULL argument") }
    guard let console = d.console else { return fail(IVSHMEM2_ENODEV, "ivshmem2_virtio_console_write: not a console") }
    let bytes = data.map { Array(UnsafeRawBufferPointer(start: $0, count: length)) } ?? []
    return d.lock.withLock { _ in
        do { try console.write(bytes, timeout: seconds(timeoutMS)) } catch { return virtioFailure("ivshmem2_virtio_console_write", error) }
        return OK
    }
}

@_cdecl("ivshmem2_virtio_console_read")
public func ivs_c_virtio_console_read(_ handle: OpaquePointer?, _ buffer: UnsafeMutableRawPointer?, _ capacity: Int, _ timeoutMS: Int32,
                                      _ received: UnsafeMutablePointer<Int>?) -> Int32 {
    guard let d = box(handle, as: VirtioDeviceBox.self), let buffer, let received, capacity > 0 else {
        return fail(IVSHMEM2_EINVAL, "ivshmem2_virtio_console_read: NULL argument or capacity 0")
    }
    guard let console = d.console else { return fail(IVSHMEM2_ENODEV, "ivshmem2_virtio_console_read: not a console") }
    return d.lock.withLock { _ in
        if d.pending.isEmpty {
            d.pending = console.drain()
            if d.pending.isEmpty {
                do { d.pending = try console.read(timeout: seconds(timeoutMS)) } catch {
                    return fail(IVSHMEM2_ETIMEDOUT, "ivshmem2_virtio_console_read: \(error)")
                }
            }
        }
        let n = min(capacity, d.pending.count)
        d.pending.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: n) }
        d.pending.removeFirst(n)
        received.pointee = n
        return OK
    }
}

@_cdecl("ivshmem2_virtio_block_capacity")
public func ivs_c_virtio_block_capacity(_ handle: OpaquePointer?) -> UInt64 { box(handle, as: VirtioDeviceBox.self)?.block?.capacitySectors ?? 0 }

@_cdecl("ivshmem2_virtio_block_max_transfer")
public func ivs_c_virtio_block_max_transfer(_ handle: OpaquePointer?) -> Int { box(handle, as: VirtioDeviceBox.self)?.block?.maxTransfer ?? 0 }

/// The checks shared by block reads and writes; the block driver when they pass.
private func blockRequest(_ call: String, _ handle: OpaquePointer?, _ pointer: UnsafeRawPointer?, _ length: Int,
                          _ body: (VirtioDeviceBox, BlockDriver) throws -> Void) -> Int32 {
    guard let d = box(handle, as: VirtioDeviceBox.self), pointer != nil else { return fail(IVSHMEM2_EINVAL, "\(call): NULL argument") }
    guard let block = d.block else { return fail(IVSHMEM2_ENODEV, "\(call): not a block device") }
    guard length > 0, length % 512 == 0, length <= block.maxTransfer else {
        return fail(IVSHMEM2_EINVAL, "\(call): length \(length) is not whole sectors in 512...\(block.maxTransfer)")
    }
    return d.lock.withLock { _ in
        do { try body(d, block) } catch { return virtioFailure(call, error) }
        return OK
    }
}

@_cdecl("ivshmem2_virtio_block_read")
public func ivs_c_virtio_block_read(_ handle: OpaquePointer?, _ sector: UInt64, _ buffer: UnsafeMutableRawPointer?, _ length: Int, _ timeoutMS: Int32) -> Int32 {
    blockRequest("ivshmem2_virtio_block_read", handle, buffer.map { UnsafeRawPointer($0) }, length) { _, block in
        let bytes = try block.read(sector: sector, count: length, timeout: seconds(timeoutMS))
        bytes.withUnsafeBytes { buffer!.copyMemory(from: $0.baseAddress!, byteCount: length) }
    }
}

@_cdecl("ivshmem2_virtio_block_write")
public func ivs_c_virtio_block_write(_ handle: OpaquePointer?, _ sector: UInt64, _ data: UnsafeRawPointer?, _ length: Int, _ timeoutMS: Int32) -> Int32 {
    blockRequest("ivshmem2_virtio_block_write", handle, data, length) { _, block in
        try block.write(sector: sector, bytes: Array(UnsafeRawBufferPointer(start: data, count: length)), timeout: seconds(timeoutMS))
    }
}

@_cdecl("ivshmem2_virtio_block_flush")
public func ivs_c_virtio_block_flush(_ handle: OpaquePointer?, _ timeoutMS: Int32) -> Int32 {
    guard let d = box(handle, as: VirtioDeviceBox.self) else { return fail(IVSHMEM2_EINVAL, "ivshmem2_virtio_block_flush: NULL device") }
    guard let block = d.block else { return fail(IVSHMEM2_ENODEV, "ivshmem2_virtio_block_flush: not a block device") }
    return d.lock.withLock { _ in
        do { try block.flush(timeout: seconds(timeoutMS)) } catch { return virtioFailure("ivshmem2_virtio_block_flush", error) }
        return OK
    }
}

@_cdecl("ivshmem2_virtio_finding_count")
public func ivs_c_virtio_finding_count(_ handle: OpaquePointer?) -> Int { box(handle, as: VirtioDeviceBox.self)?.endpoint.findings.all.count ?? 0 }

@_cdecl("ivshmem2_virtio_get_finding")
public func ivs_c_virtio_get_finding(_ handle: OpaquePointer?, _ index: Int, _ out: UnsafeMutablePointer<ivshmem2_virtio_finding>?) -> Int32 {
    guard let d = box(handle, as: VirtioDeviceBox.self), let out else { return fail(IVSHMEM2_EINVAL, "ivshmem2_virtio_get_finding: NULL argument") }
    let all = d.endpoint.findings.all
    guard index >= 0, index < all.count else { return fail(IVSHMEM2_ENOSPC, "ivshmem2_virtio_get_finding: index \(index) of \(all.count)") }
    var f = ivshmem2_virtio_finding()
    withUnsafeMutableBytes(of: &f.requirement) { copyCString(all[index].requirement, into: $0) }
    withUnsafeMutableBytes(of: &f.message) { copyCString(all[index].message, into: $0) }
    f.culprit = all[index].culprit == .frontEnd ? Int32(IVSHMEM2_VIRTIO_CULPRIT_FRONTEND) : Int32(IVSHMEM2_VIRTIO_CULPRIT_BACKEND)
    out.pointee = f
    return OK
}
