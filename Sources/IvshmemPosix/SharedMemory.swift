#if canImport(Glibc)
import Glibc
#endif
import CIvshmemShim

/// Ways to create the memory that ivshmem peers share. Each returns a descriptor (close-on-
/// exec) already truncated to the requested size.
public enum SharedMemory {
    /// An anonymous `memfd_create(2)` object: nothing in the file system to clean up, gone
    /// when the last descriptor and mapping are.
    ///
    /// With `sealingSize`, the size is sealed once set (`F_SEAL_SHRINK | F_SEAL_GROW`, then
    /// `F_SEAL_SEAL` so that no holder can add or lift seals): every process that gets the
    /// descriptor can read and write the memory but none can `ftruncate` it, so nobody can make
    /// another holder's mapping fault (SIGBUS) or make the size lie about the layout.
    public static func createAnonymous(name: String = "ivshmem2", size: Int, sealingSize: Bool = false) throws -> FileDescriptor {
        let flags = ivs_mfd_cloexec_flag() | (sealingSize ? ivs_mfd_allow_sealing_flag() : 0)
        let raw = try retryingSystemCall("memfd_create", detail: name) { ivs_memfd_create(name, flags) }
        let fd = FileDescriptor(rawValue: raw)
        do {
            try fd.truncate(to: size)
            if sealingSize { try fd.addSeals([.shrink, .grow, .seal]) }
        } catch {
            fd.closeQuietly()
            throw error
        }
        return fd
    }

    /// `shm_open(name, O_RDWR | O_CREAT | O_EXCL, mode)`, falling back to opening the object
    /// that already exists (`O_RDWR` only). Nothing is truncated or changed: the caller checks
    /// an object it did not create (owner, permissions) before trusting it. glibc's `shm_open`
    /// adds `O_NOFOLLOW`, so a symbolic link planted under the name is not followed.
    /// - Returns: the descriptor, and whether this call created the object.
    public static func createOrOpenNamed(_ name: String, mode: mode_t) throws -> (fd: FileDescriptor, created: Bool) {
        let objectName = normalizedName(name)
        // Twice at most: the object may vanish between the failed create and the open.
        for _ in 0..<3 {
            do {
                let raw = try retryingSystemCall("shm_open(O_CREAT|O_EXCL)", detail: objectName) {
                    shm_open(objectName, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, mode)
                }
                return (FileDescriptor(rawValue: raw), true)
            } catch let error as SystemCallError where error.errno == .fileExists {}
            do {
                let raw = try retryingSystemCall("shm_open", detail: objectName) { shm_open(objectName, O_RDWR | O_CLOEXEC, 0) }
                return (FileDescriptor(rawValue: raw), false)
            } catch let error as SystemCallError where error.errno == .noEntry {}
        }
        throw SystemCallError(call: "shm_open", errno: .fileExists, detail: "\(objectName): created and removed by someone else while opening it")
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

    /// File seals (`F_SEAL_*`) of a memfd: restrictions that, once added, hold for every
    /// descriptor of the object in every process, and can never be removed.
    public struct Seals: OptionSet, Sendable, CustomStringConvertible {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        /// `F_SEAL_SHRINK`: nobody can make the object smaller (no SIGBUS for its mappers).
        public static let shrink = Seals(rawValue: ivs_seal_shrink())
        /// `F_SEAL_GROW`: nobody can make it larger.
        public static let grow = Seals(rawValue: ivs_seal_grow())
        /// `F_SEAL_SEAL`: no seal can be added any more.
        public static let seal = Seals(rawValue: ivs_seal_seal())
        /// `F_SEAL_WRITE`: nobody can modify the content.
        public static let write = Seals(rawValue: ivs_seal_write())

        public var description: String {
            let names: [(Seals, String)] = [(.seal, "seal"), (.shrink, "shrink"), (.grow, "grow"), (.write, "write")]
            let set = names.filter { contains($0.0) }.map(\.1)
            return set.isEmpty ? "none" : set.joined(separator: "|")
        }
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

extension FileDescriptor {
    /// `fcntl(F_ADD_SEALS)`. Fails with EPERM once `.seal` is set, EINVAL for a file that
    /// does not support sealing (a memfd created without `MFD_ALLOW_SEALING`, a plain file).
    public func addSeals(_ seals: SharedMemory.Seals) throws {
        _ = try retryingSystemCall("fcntl(F_ADD_SEALS)", detail: "\(description), \(seals)") { ivs_add_seals(rawValue, seals.rawValue) }
    }

    /// A second, independent open file description of the same file (`open("/proc/self/fd/N")`):
    /// unlike ``duplicate()`` it has its own flock and file flags, so a lock taken on it is not
    /// shared with copies of this descriptor that were handed to other processes.
    public func reopen(flags: CInt = O_RDONLY) throws -> FileDescriptor {
        try FileDescriptor.open("/proc/self/fd/\(rawValue)", flags: flags)
    }
}
