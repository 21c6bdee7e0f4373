import IvshmemPosix

/// Virtio block (device ID 2) over ivshmem (VIRTIO-BLK-1, VIRTIO-BLK-2): one request queue;
/// a request is a 16-byte header (type, reserved, sector) the device reads, the data, and one
/// status byte the device writes; capacity, size_max and seg_max in the configuration.
public enum VirtioBlock {
    public static let sectorSize = 512
    public static let typeIn: UInt32 = 0
    public static let typeOut: UInt32 = 1
    public static let typeFlush: UInt32 = 4
    public static let typeGetID: UInt32 = 8
    public static let statusOK: UInt8 = 0
    public static let statusIOError: UInt8 = 1
    public static let statusUnsupported: UInt8 = 2
    public static let featureSizeMax: UInt64 = 1 << 1
    public static let featureSegMax: UInt64 = 1 << 2
    public static let featureFlush: UInt64 = 1 << 9
    public static let queueSize: UInt16 = 32
}

/// The block back-end: requests go to a file (or any descriptor pread/pwrite work on), the
/// data copied straight between the file and the shared memory.
public final class BlockBackEnd: VirtioDeviceImplementation, @unchecked Sendable {
    public let deviceID = VirtioDeviceID.block
    public let deviceFeatures = VirtioBlock.featureSizeMax | VirtioBlock.featureSegMax | VirtioBlock.featureFlush
    public let queueSizes = [VirtioBlock.queueSize]
    public let capacitySectors: UInt64
    public let sizeMax: UInt32
    private let image: FileDescriptor
    public private(set) var requests = 0

    /// `imageBytes`: the file's size (the capacity is its whole sectors); `sizeMax`: the largest
    /// data buffer of one request.
    public init(image: FileDescriptor, imageBytes: UInt64, sizeMax: UInt32 = 1 << 17) {
        self.image = image
        capacitySectors = imageBytes / UInt64(VirtioBlock.sectorSize)
        self.sizeMax = sizeMax
    }

    public func initialConfig() -> [UInt8] {
        // struct virtio_blk_config: capacity u64, size_max u32, seg_max u32 (the rest unused here).
        var c = [UInt8](repeating: 0, count: 16)
        for i in 0..<8 { c[i] = UInt8(truncatingIfNeeded: capacitySectors >> (8 * UInt64(i))) }
        for i in 0..<4 { c[8 + i] = UInt8(truncatingIfNeeded: sizeMax >> (8 * UInt32(i))) }
        c[12] = 1 // seg_max: one data segment per request
        return c
    }

    public func queueNotified(_ queue: DeviceQueue, backend: VirtioBackend) {
        var any = false
        while let chain = queue.pop() {
            let written = serve(chain, backend: backend)
            queue.push(head: chain.head, written: written)
            requests += 1
            any = true
        }
        if any { backend.notify(queue) }
    }

    /// Serves one request; returns the bytes written into the chain's writable part.
    private func serve(_ chain: VirtioChain, backend: VirtioBackend) -> UInt32 {
        let rw = backend.endpoint.rw
        guard let header = chain.buffers.first, !header.writable, header.length >= 16,
              let statusBuffer = chain.buffers.last, statusBuffer.writable, statusBuffer.length >= 1, chain.buffers.count >= 2 else {
            backend.findings.record("VIRTIO-BLK-1", .frontEnd, "request \(chain.head): not header, data, status (\(chain.buffers.count) buffers)")
            return 0
        }
        let type: UInt32 = rw.load(header.offset), sector: UInt64 = rw.load(header.offset + 8)
        let data = Array(chain.buffers.dropFirst().dropLast())
        var status = VirtioBlock.statusOK
        var written: UInt32 = 1
        func inRange(_ bytes: Int) -> Bool {
            bytes % VirtioBlock.sectorSize == 0 && sector <= capacitySectors && UInt64(bytes / VirtioBlock.sectorSize) <= capacitySectors - sector
        }
        switch type {
        case VirtioBlock.typeIn, VirtioBlock.typeOut:
            let isRead = type == VirtioBlock.typeIn
            let total = data.reduce(0) { $0 + $1.length }
            guard data.allSatisfy({ $0.writable == isRead }) else {
                backend.findings.record("VIRTIO-BLK-1", .frontEnd, "request \(chain.head): \(isRead ? "read" : "write") data buffer with the wrong direction")
                status = VirtioBlock.statusIOError
                break
            }
            guard inRange(total) else {
                backend.findings.record("VIRTIO-BLK-2", .frontEnd, "request \(chain.head): \(total) bytes at sector \(sector) beyond the capacity of \(capacitySectors) sectors or not whole sectors")
                status = VirtioBlock.statusIOError
                break
            }
            var position = sector * UInt64(VirtioBlock.sectorSize)
            for b in data {
                let p = rw.base + b.offset
                let n = isRead ? (try? image.read(into: UnsafeMutableRawBufferPointer(start: p, count: b.length), at: position))
                               : (try? image.write(UnsafeRawBufferPointer(start: p, count: b.length), at: position))
                if n != b.length { status = VirtioBlock.statusIOError; break }
                position += UInt64(b.length)
            }
            if isRead && status == VirtioBlock.statusOK { written += UInt32(total) }
        case VirtioBlock.typeFlush:
            status = (try? image.synchronize()) != nil ? VirtioBlock.statusOK : VirtioBlock.statusIOError
        case VirtioBlock.typeGetID:
            if let b = data.first, b.writable {
                let id = Array("ivshmem2-virtio-blk".utf8.prefix(min(20, b.length)))
                id.withUnsafeBytes { rw.copyIn($0, at: b.offset) }
                written += UInt32(id.count)
            }
        default:
            status = VirtioBlock.statusUnsupported
        }
        rw.store(statusBuffer.offset, status)
        return written
    }
}

/// The block front-end driver: synchronous sector reads and writes through bounce buffers in
/// the R/W section (as virtio_ivshmem's DMA operations do).
public final class BlockDriver: @unchecked Sendable {
    public let frontend: VirtioFrontend
    public let queue: DriverQueue
    public let capacitySectors: UInt64
    public let maxTransfer: Int
    private let header: Int
    private let data: Int
    private let statusByte: Int

    public init(frontend: VirtioFrontend, maxTransfer wanted: Int = 1 << 16, timeout: Double = 10) throws {
        self.frontend = frontend
        guard frontend.deviceID == VirtioDeviceID.block else {
            throw VirtioError("VIRTIO-LINK-2", "the link carries device ID \(frontend.deviceID), not a block device (2)")
        }
        try frontend.probe(timeout: timeout)
        let features = try frontend.negotiate(wanted: VirtioBlock.featureSizeMax | VirtioBlock.featureSegMax | VirtioBlock.featureFlush)
        queue = try frontend.setUpQueue(0, of: 1)
        let c = try frontend.readConfig(offset: 0, count: 16)
        capacitySectors = (0..<8).reduce(0) { $0 | UInt64(c[$1]) << (8 * UInt64($1)) }
        let sizeMax = (0..<4).reduce(0) { $0 | Int(c[8 + $1]) << (8 * $1) }
        maxTransfer = features & VirtioBlock.featureSizeMax != 0 && sizeMax > 0 ? min(wanted, sizeMax) : wanted
        header = try frontend.allocate(16)
        data = try frontend.allocate(self.maxTransfer, alignment: 4096)
        statusByte = try frontend.allocate(1)
        try frontend.driverOK()
    }

    private func request(type: UInt32, sector: UInt64, count: Int, writing: Bool, timeout: Double) throws -> UInt8 {
        let rw = frontend.endpoint.rw
        rw.store(header, type)
        rw.store(header + 4, UInt32(0))
        rw.store(header + 8, sector)
        rw.store(statusByte, UInt8(0xFF))
        var chain = [VirtioBuffer(offset: header, length: 16, writable: false)]
        if count > 0 { chain.append(VirtioBuffer(offset: data, length: count, writable: !writing)) }
        chain.append(VirtioBuffer(offset: statusByte, length: 1, writable: true))
        guard queue.add(chain) != nil else { throw VirtioError("VIRTIO-Q-4", "no free descriptors") }
        frontend.kick(queue)
        _ = try frontend.waitForUsed(queue, timeout: timeout)
        return rw.load(statusByte)
    }

    /// Reads `count` bytes (whole sectors, at most `maxTransfer`) from `sector`.
    public func read(sector: UInt64, count: Int, timeout: Double = 10) throws -> [UInt8] {
        precondition(count > 0 && count <= maxTransfer && count % VirtioBlock.sectorSize == 0, "read size")
        let s = try request(type: VirtioBlock.typeIn, sector: sector, count: count, writing: false, timeout: timeout)
        guard s == VirtioBlock.statusOK else { throw VirtioError("VIRTIO-BLK-1", "read of sector \(sector): status \(s)") }
        return frontend.endpoint.rw.bytes(at: data, count: count)
    }

    /// Writes `bytes` (whole sectors, at most `maxTransfer`) at `sector`.
    public func write(sector: UInt64, bytes: [UInt8], timeout: Double = 10) throws {
        precondition(!bytes.isEmpty && bytes.count <= maxTransfer && bytes.count % VirtioBlock.sectorSize == 0, "write size")
        bytes.withUnsafeBytes { frontend.endpoint.rw.copyIn($0, at: data) }
        let s = try request(type: VirtioBlock.typeOut, sector: sector, count: bytes.count, writing: true, timeout: timeout)
        guard s == VirtioBlock.statusOK else { throw VirtioError("VIRTIO-BLK-1", "write of sector \(sector): status \(s)") }
    }

    /// The status of a raw request (for tests of error handling).
    public func rawStatus(type: UInt32, sector: UInt64, count: Int, timeout: Double = 10) throws -> UInt8 {
        try request(type: type, sector: sector, count: count, writing: type == VirtioBlock.typeOut, timeout: timeout)
    }

    public func flush(timeout: Double = 10) throws {
        let s = try request(type: VirtioBlock.typeFlush, sector: 0, count: 0, writing: false, timeout: timeout)
        guard s == VirtioBlock.statusOK else { throw VirtioError("VIRTIO-BLK-1", "flush: status \(s)") }
    }
}
