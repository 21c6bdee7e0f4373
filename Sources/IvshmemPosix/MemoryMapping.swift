#if canImport(Glibc)
import Glibc
#endif
import CIvshmemShim

/// A shared (`MAP_SHARED`) mapping of a file descriptor, unmapped when the object goes away.
///
/// The descriptor may be closed once the mapping exists; the mapping keeps the memory.
public final class MemoryMapping: @unchecked Sendable {
    /// The first mapped byte.
    public let base: UnsafeMutableRawPointer
    /// The mapped length in bytes.
    public let size: Int
    /// Whether the mapping allows writes.
    public let writable: Bool

    /// `mmap(size, PROT_READ[|PROT_WRITE], MAP_SHARED, fd, offset)`.
    /// `offset` must be a multiple of the page size; `size` must be > 0.
    public init(fd: FileDescriptor, size: Int, offset: Int = 0, writable: Bool = true) throws {
        guard size > 0 else {
            throw SystemCallError(call: "mmap", errno: .invalidArgument, detail: "\(fd), size 0")
        }
        let protection = writable ? PROT_READ | PROT_WRITE : PROT_READ
        let pointer = try checkedPointer("mmap", detail: "\(fd), \(size) bytes at offset \(offset)", failure: { $0 == MAP_FAILED }) {
            mmap(nil, size, protection, MAP_SHARED, fd.rawValue, off_t(offset))
        }
        guard let pointer else {
            throw SystemCallError(call: "mmap", errno: .invalidArgument, detail: "\(fd): returned NULL")
        }
        self.base = pointer
        self.size = size
        self.writable = writable
    }

    /// The mapping as a buffer.
    public var bytes: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: base, count: size) }

    /// Stores `value` at `offset` (release ordering, then a full fence), or returns false
    /// without storing when the page is gone: the file behind the mapping was truncated below
    /// `offset` by another process, and the access raised SIGBUS, which is caught here instead
    /// of ending the process. For memory other processes can truncate (a POSIX object, a file).
    public func storeGuarded(_ value: UInt32, at offset: Int) -> Bool {
        precondition(offset >= 0 && offset + 4 <= size && offset % 4 == 0, "aligned 32-bit store inside the mapping")
        return ivs_guarded_store32_release(base + offset, value) == 0
    }

    deinit {
        munmap(base, size)
    }
}
