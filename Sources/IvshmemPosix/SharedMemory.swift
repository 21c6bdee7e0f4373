#if canImport(Glibc)
import Glibc
#endif
import CIvshmemShim

/// Ways to create the memory that ivshmem peers share. Each returns a descriptor (close-on-
/// exec) already truncated to the requested size.
public enum SharedMemory {
    /// An anonymous `memfd_create(2)` object: nothing in the file system to clean up, gone
    /// when the last descriptor and mapping are.
    public static func createAnonymous(name: String = "ivshmem2", size: Int) throws -> FileDescriptor {
        let raw = try retryingSystemCall("memfd_create", detail: name) { ivs_memfd_create(name, ivs_mfd_cloexec_flag()) }
        let fd = FileDescriptor(rawValue: raw)
        do {
            try fd.truncate(to: size)
        } catch {
            fd.closeQuietly()
            throw error
        }
        return fd
    }

    /// `shm_open(name, O_CREAT|O_RDWR, mode)`: a POSIX shared-memory object that outlives the
    /// process until ``unlinkNamed(_:)``. An object that already exists is reused as is
    /// (content included) and truncated to `size`; its permissions are set to `mode`.
    /// - Parameter name: as `shm_open` takes it; a leading "/" is added when missing.
    public static func openNamed(_ name: String, size: Int, mode: mode_t = 0o600) throws -> FileDescriptor {
        let objectName = normalizedName(name)
        let raw = try retryingSystemCall("shm_open", detail: objectName) { shm_open(objectName, O_CREAT | O_RDWR | O_CLOEXEC, mode) }
        let fd = FileDescriptor(rawValue: raw)
        do {
            try fd.changeMode(mode)
            try fd.truncate(to: size)
        } catch {
            fd.closeQuietly()
            throw error
        }
        return fd
    }

    /// `shm_unlink(3)`.
    public static func unlinkNamed(_ name: String) throws {
        let objectName = normalizedName(name)
        _ = try retryingSystemCall("shm_unlink", detail: objectName) { shm_unlink(objectName) }
    }

    /// A file in `directory` (for example a hugetlbfs mount), created with `mkstemp` as
    /// `ivshmem.XXXXXX` and unlinked at once, so only descriptors keep it: the reference
    /// server's `-m`. `mkstemp` creates it 0600; `mode` widens that when given.
    public static func createInDirectory(_ directory: String, size: Int, mode: mode_t = 0o600) throws -> FileDescriptor {
        var template = Array((directory + "/ivshmem.XXXXXX").utf8CString)
        let raw = try retryingSystemCall("mkstemp", detail: directory + "/ivshmem.XXXXXX") {
            template.withUnsafeMutableBufferPointer { buffer in buffer.baseAddress.map { ivs_mkostemp($0, O_CLOEXEC) } ?? -1 }
        }
        let fd = FileDescriptor(rawValue: raw)
        let path = cString(template)
        do {
            try FileSystem.unlink(path)
            if mode != 0o600 { try fd.changeMode(mode) }
            try fd.truncate(to: size)
        } catch {
            fd.closeQuietly()
            throw error
        }
        return fd
    }

    /// File seals (`F_SEAL_*`) of a memfd.
    public struct Seals: OptionSet, Sendable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        /// `F_SEAL_SHRINK`: nobody can make the object smaller (no SIGBUS for its mappers).
        public static let shrink = Seals(rawValue: ivs_seal_shrink())
        /// `F_SEAL_GROW`: nobody can make it larger.
        public static let grow = Seals(rawValue: ivs_seal_grow())
    }

    /// `fcntl(F_GET_SEALS)`. An object that cannot carry seals (a POSIX shm object, a file)
    /// has none.
    public static func seals(of fd: FileDescriptor) throws -> Seals {
        let raw = ivs_get_seals(fd.rawValue)
        if raw >= 0 { return Seals(rawValue: raw) }
        if errno == EINVAL { return [] }
        throw SystemCallError(call: "fcntl(F_GET_SEALS)", errno: Errno(rawValue: errno), detail: fd.description)
    }

    /// The name with one leading "/" (what glibc expects for a portable name).
    public static func normalizedName(_ name: String) -> String {
        name.hasPrefix("/") ? name : "/" + name
    }
}
