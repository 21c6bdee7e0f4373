#if canImport(Glibc)
import Glibc
#endif

/// Path operations the server and tools need (unlinking a socket, writing a pid file), so
/// that no other module calls the C library directly.
public enum FileSystem {
    /// `lstat(2)`: what is at `path`, without following a symbolic link; nil when nothing is.
    public static func status(ofPath path: String) throws -> FileStatus? {
        var st = stat()
        do {
            _ = try retryingSystemCall("lstat", detail: path) { lstat(path, &st) }
        } catch let error as SystemCallError where error.errno == .noEntry {
            return nil
        }
        return FileStatus(st)
    }

    /// `unlink(2)`.
    public static func unlink(_ path: String) throws {
        _ = try retryingSystemCall("unlink", detail: path) { Glibc.unlink(path) }
    }

    /// `unlink(2)`, where a missing file is fine.
    public static func unlinkIfPresent(_ path: String) throws {
        do { try unlink(path) } catch let error as SystemCallError where error.errno == .noEntry {}
    }

    /// `readlink(2)`: where a symbolic link points (e.g. `/proc/self/fd/N`).
    public static func readLink(_ path: String) throws -> String {
        var buffer = [CChar](repeating: 0, count: 4097)
        let n = try retryingSystemCall("readlink", detail: path) {
            buffer.withUnsafeMutableBufferPointer { b in b.baseAddress.map { readlink(path, $0, 4096) } ?? -1 }
        }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Writes `bytes` to `path` (created with `mode`, truncated if present).
    public static func writeFile(_ path: String, bytes: [UInt8], mode: mode_t = 0o644) throws {
        let fd = try FileDescriptor.open(path, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: mode)
        try fd.closeAfter { try fd.writeAll(bytes) }
    }

    /// Reads the whole file at `path`.
    public static func readFile(_ path: String) throws -> [UInt8] {
        let fd = try FileDescriptor.open(path, flags: O_RDONLY)
        return try fd.closeAfter { try fd.readAll() }
    }

    /// `mkdtemp(3)`: creates a new private directory from a template ending in `XXXXXX`.
    public static func makeTemporaryDirectory(template: String) throws -> String {
        var bytes = Array(template.utf8CString)
        _ = try checkedPointer("mkdtemp", detail: template, failure: { $0 == nil }) {
            bytes.withUnsafeMutableBufferPointer { buffer in buffer.baseAddress.flatMap { mkdtemp($0) } }
        }
        return cString(bytes)
    }

    /// Removes a directory and what is directly inside it (a test's scratch directory).
    public static func removeDirectoryTree(_ path: String) {
        if let dir = opendir(path) {
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw -> String in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name == "." || name == ".." { continue }
                let child = path + "/" + name
                if let st = try? status(ofPath: child), st.isDirectory {
                    removeDirectoryTree(child)
                } else {
                    _ = Glibc.unlink(child)
                }
            }
            closedir(dir)
        }
        _ = rmdir(path)
    }
}

/// The text of a NUL-terminated C character array.
func cString(_ chars: [CChar]) -> String {
    String(decoding: chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

extension FileSystem {
    /// Names in a directory (without `.` and `..`).
    public static func listDirectory(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw SystemCallError(call: "opendir", errno: Errno(rawValue: errno), detail: path) }
        defer { closedir(dir) }
        var names: [String] = []
        // readdir's records are only as long as their name: read the name in place, up to its
        // NUL. (Copying `d_name`, a 256-byte array, read past the end of the last record.)
        let nameOffset = MemoryLayout<dirent>.offset(of: \dirent.d_name)!
        while let entry = readdir(dir) {
            let name = String(cString: (UnsafeRawPointer(entry) + nameOffset).assumingMemoryBound(to: CChar.self))
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}

/// An advisory exclusive lock on a file (flock), held for as long as the descriptor is open.
public enum FileLock {
    /// Opens (creating, mode 0600) and locks `path` without waiting. nil when another process
    /// holds the lock.
    ///
    /// `O_NOFOLLOW`: a symbolic link planted at `path` (in a shared directory like /tmp) is not
    /// followed, so the lock never creates or opens a file elsewhere; it fails with
    /// ``Errno/tooManySymbolicLinks``. Anything but a regular file (a FIFO, a device) fails
    /// with ``NotARegularFile``.
    public static func tryExclusive(path: String) throws -> FileDescriptor? {
        let fd = try FileDescriptor.open(path, flags: O_CREAT | O_RDWR | O_NOFOLLOW | O_NONBLOCK, mode: 0o600)
        do {
            let status = try fd.status()
            guard status.isRegularFile else { throw NotARegularFile(path: path, mode: status.mode) }
            guard try tryExclusive(on: fd, detail: path) else {
                fd.closeQuietly()
                return nil
            }
            return fd
        } catch {
            fd.closeQuietly()
            throw error
        }
    }

    /// `flock(LOCK_EX | LOCK_NB)` on an open descriptor: true when locked, false when another
    /// open file description holds the lock. The lock belongs to the open file description, so
    /// it is shared by every copy passed to another process: lock a private one
    /// (``FileDescriptor/reopen(flags:)``) when copies are handed out.
    public static func tryExclusive(on fd: FileDescriptor, detail: String? = nil) throws -> Bool {
        do {
            _ = try retryingSystemCall("flock(LOCK_EX|LOCK_NB)", detail: detail ?? fd.description) { flock(fd.rawValue, LOCK_EX | LOCK_NB) }
            return true
        } catch let e as SystemCallError where e.errno == .wouldBlock {
            return false
        }
    }

    /// A lock path that holds something other than a regular file.
    public struct NotARegularFile: Error, CustomStringConvertible, Sendable {
        public var path: String
        public var mode: mode_t
        public var description: String { "\(path) is not a regular file (mode 0\(String(mode, radix: 8))); refusing to use it as a lock file" }
    }
}
