import CIvshmemShim

/// The R/W section as both sides see it: plain shared memory holding the header, the rings and
/// the buffers. Addresses in this transport are offsets into it (VIRTIO-Q-3, VIRTIO-Q-4); every
/// access here is bounds-checked against it, and values are little-endian (VIRTIO-HDR-2).
public struct RWSection: @unchecked Sendable {
    public let base: UnsafeMutableRawPointer
    public let size: Int

    public init(base: UnsafeMutableRawPointer, size: Int) {
        self.base = base
        self.size = size
    }

    /// Whether [offset, offset + length) lies inside the section.
    public func contains(offset: UInt64, length: UInt64) -> Bool {
        offset <= UInt64(size) && length <= UInt64(size) - offset
    }

    public func load<T: FixedWidthInteger>(_ offset: Int, as type: T.Type = T.self) -> T {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= size, "R/W section access out of range")
        return T(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    public func store<T: FixedWidthInteger>(_ offset: Int, _ value: T) {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= size, "R/W section access out of range")
        base.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
    }

    /// A 32-bit load with acquire ordering (write_transaction, ring indices' partner fields).
    public func loadAcquire32(_ offset: Int) -> UInt32 { UInt32(littleEndian: ivs_load32_acquire(base + offset)) }

    /// A 32-bit store with release ordering.
    public func storeRelease32(_ offset: Int, _ value: UInt32) { ivs_store32_release(base + offset, value.littleEndian) }

    /// A full barrier between the stores before and after it (virt_wmb/virt_rmb).
    public func fence() { ivs_full_fence() }

    public func copyIn(_ bytes: UnsafeRawBufferPointer, at offset: Int) {
        precondition(contains(offset: UInt64(offset), length: UInt64(bytes.count)), "R/W section copy out of range")
        if let src = bytes.baseAddress, bytes.count > 0 { (base + offset).copyMemory(from: src, byteCount: bytes.count) }
    }

    public func copyOut(at offset: Int, into bytes: UnsafeMutableRawBufferPointer) {
        precondition(contains(offset: UInt64(offset), length: UInt64(bytes.count)), "R/W section copy out of range")
        if let dst = bytes.baseAddress, bytes.count > 0 { dst.copyMemory(from: base + offset, byteCount: bytes.count) }
    }

    public func bytes(at offset: Int, count: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { buf, n in
            copyOut(at: offset, into: UnsafeMutableRawBufferPointer(buf))
            n = count
        }
    }

    public func zero(at offset: Int, count: Int) {
        precondition(contains(offset: UInt64(offset), length: UInt64(count)), "R/W section zeroing out of range")
        (base + offset).initializeMemory(as: UInt8.self, repeating: 0, count: count)
    }
}
