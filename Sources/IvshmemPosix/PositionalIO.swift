#if canImport(Glibc)
import Glibc
#endif

/// Positional reads and writes and `fsync`: what a file-backed block device needs.
extension FileDescriptor {
    /// `pread(2)`: up to `buffer.count` bytes at `offset`; returns how many were read (0 at end of file).
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Int {
        try retryingSystemCall("pread", detail: "\(self) at \(offset)") { Glibc.pread(rawValue, buffer.baseAddress, buffer.count, off_t(offset)) }
    }

    /// `pwrite(2)`: up to `buffer.count` bytes at `offset`; returns how many were written.
    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws -> Int {
        try retryingSystemCall("pwrite", detail: "\(self) at \(offset)") { Glibc.pwrite(rawValue, buffer.baseAddress, buffer.count, off_t(offset)) }
    }

    /// `fsync(2)`.
    public func synchronize() throws {
        _ = try retryingSystemCall("fsync", detail: "\(self)") { Glibc.fsync(rawValue) }
    }
}
