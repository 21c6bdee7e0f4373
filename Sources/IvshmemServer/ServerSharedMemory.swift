#if canImport(Glibc)
import Glibc
#endif
import IvshmemPosix
import IvshmemSpec
import CIvshmemShim

/// A named shared-memory object (`-M`) the server will not use, and why.
public struct SharedMemoryRefusal: Error, CustomStringConvertible, Sendable {
    public var name: String
    public var message: String
    public var description: String { "-M/--shm-name '\(name)': \(message)" }
}

/// The shared memory the server hands to every peer, and its view of the State Table.
///
/// Every peer gets a descriptor of the same object, and with it the power to `ftruncate` it:
/// shrinking makes the server's (and every peer's) mapping fault with SIGBUS, growing makes
/// later peers derive a wrong layout from the size (WIRE-CLI-7). A memfd is sealed against
/// both (SRV-SHM-5); a POSIX object or a file cannot be sealed, so its size is checked and put
/// back before the server relies on it, and the State Table stores are guarded (SRV-SHM-6).
final class ServerSharedMemory {
    /// The descriptor sent with every INIT (WIRE-INIT-1).
    let descriptor: OwnedDescriptor
    /// The State Table mapping (SHM-LAYOUT-8 size); nil for a v1 server, whose memory has no
    /// table (V1-SRV-SHM-1).
    private let stateTable: MemoryMapping?
    /// How many 32-bit entries the table has room for.
    let entryCount: Int
    /// The object name to unlink at shutdown, for a POSIX object.
    let posixName: String?
    /// The configured size (SRV-SHM-1).
    let size: Int
    /// Whether no holder can change the size (a sealed memfd, SRV-SHM-5).
    let sizeIsSealed: Bool
    /// For a POSIX object: a private open file description of it that holds an flock while
    /// the server runs (SRV-SHM-8). Private because the lock belongs to the open file
    /// description: on the descriptor sent to peers it would outlive the server in them.
    private let objectLock: FileDescriptor?

    /// Creates or opens the memory, sets it to exactly `size` bytes (SRV-SHM-1) and zeroes
    /// the State Table, also when an existing object held old content (SRV-SHM-2). Without a
    /// geometry (v1) nothing is mapped or written (V1-SRV-SHM-1).
    init(backing: SharedMemoryBacking, size: Int, geometry: SharedMemoryGeometry?, mode: mode_t) throws {
        self.size = size
        let fd: FileDescriptor
        var lock: FileDescriptor?
        switch backing {
        case .memfd:
            fd = try SharedMemory.createAnonymous(name: "ivshmem2", size: size, sealingSize: true)
            posixName = nil
            sizeIsSealed = true
        case .posix(let name):
            (fd, lock) = try Self.openExclusively(name: name, size: size, mode: mode)
            posixName = name
            sizeIsSealed = false
        case .directory(let path):
            fd = try SharedMemory.createInDirectory(path, size: size, mode: mode)
            posixName = nil
            sizeIsSealed = false
        }
        objectLock = lock
        descriptor = OwnedDescriptor(fd)
        guard let geometry else {
            stateTable = nil
            entryCount = 0
            return
        }
        let tableSize = Int(geometry.stateTableSize)
        let table: MemoryMapping
        do { table = try MemoryMapping(fd: fd, size: tableSize, offset: 0, writable: true) } catch {
            // Like a shutdown, a failed start leaves no named object behind (SRV-SIG-1).
            if let name = posixName { try? SharedMemory.unlinkNamed(name) }
            lock?.closeQuietly()
            throw error
        }
        stateTable = table
        entryCount = tableSize / 4
        table.base.initializeMemory(as: UInt8.self, repeating: 0, count: tableSize)
        ivs_full_fence()
    }

    deinit { objectLock?.closeQuietly() }

    /// Opens a POSIX object for the server's exclusive use, before touching its size or
    /// content (a refused start must leave another server's object alone):
    /// - created with `O_EXCL` when the name is free; an existing object is adopted only when
    ///   it is a regular file owned by our effective user that grants group and others nothing
    ///   beyond `mode` — otherwise whoever could open it before would read the peers' data
    ///   through a descriptor they kept (SRV-SHM-7);
    /// - locked (flock on a private open file description) so that a second server given the
    ///   same name refuses to start instead of zeroing this one's State Table and unlinking
    ///   the name under it (SRV-SHM-8). The lock is on the object itself, not on a lock file
    ///   beside it: it follows the object through renames and hard links, needs no second path
    ///   in a shared directory (which could be planted), and is released by the kernel when the
    ///   server dies, so a crash never leaves a stale lock behind.
    private static func openExclusively(name: String, size: Int, mode: mode_t) throws -> (FileDescriptor, FileDescriptor) {
        let path = "/dev/shm" + SharedMemory.normalizedName(name)
        let (fd, created) = try SharedMemory.createOrOpenNamed(name, mode: mode)
        var lock: FileDescriptor?
        var locked = false
        do {
            if !created {
                let status = try fd.status()
                guard status.isRegularFile else {
                    throw SharedMemoryRefusal(name: name, message: "\(path) exists and is not a regular file; refusing to use it")
                }
                guard status.owner == geteuid() else {
                    throw SharedMemoryRefusal(name: name, message: "\(path) exists and belongs to uid \(status.owner), not to this server (uid \(geteuid())); its owner could read the peers' data. Remove it or choose another name")
                }
                let extra = status.permissions & 0o077 & ~mode
                guard extra == 0 else {
                    throw SharedMemoryRefusal(name: name, message: "\(path) exists with mode 0\(String(status.permissions, radix: 8)), which grants group/others more than --mode 0\(String(mode, radix: 8)) allows (anyone who opened it may still hold it). Remove it or choose another name")
                }
            }
            let privateDescription = try fd.reopen()
            lock = privateDescription
            locked = try FileLock.tryExclusive(on: privateDescription, detail: path)
            guard locked else {
                throw SharedMemoryRefusal(name: name, message: "another server is using \(path) (it holds its lock); two servers must not share one object")
            }
            try fd.changeMode(mode)
            try fd.truncate(to: size)
            return (fd, privateDescription)
        } catch {
            // Unlink only what is ours: an object this call created, or one it locked.
            if created || locked { try? SharedMemory.unlinkNamed(name) }
            lock?.closeQuietly()
            fd.closeQuietly()
            throw error
        }
    }

    /// What ``ensureConfiguredSize()`` found.
    enum SizeCheck: Equatable {
        /// The object has its configured size (always, when sealed).
        case intact
        /// A peer had changed the size to `found` bytes; it is back to the configured size.
        /// Content beyond a shrunken size is lost (reads as zero).
        case restored(found: Int)
        /// The size is wrong and could not be put back.
        case failed(found: Int?, error: String)
    }

    /// Checks the object still has the configured size and restores it when a peer changed it
    /// (SRV-SHM-6): before each INIT, so a newcomer never derives its layout from a size a peer
    /// chose, and before each State Table store. A sealed memfd cannot change (SRV-SHM-5).
    func ensureConfiguredSize() -> SizeCheck {
        guard !sizeIsSealed else { return .intact }
        let found: Int
        do { found = try descriptor.fd.size() } catch { return .failed(found: nil, error: "\(error)") }
        guard found != size else { return .intact }
        do { try descriptor.fd.truncate(to: size) } catch { return .failed(found: found, error: "\(error)") }
        return .restored(found: found)
    }

    /// Writes 0 into peer `id`'s State Table entry and makes it visible before anything the
    /// caller sends next (SRV-GONE-2 before SRV-GONE-3). False when the store could not be
    /// done: the memory shrank under the table (SRV-SHM-6) — the entry is then gone anyway,
    /// and reads as 0 once the size is restored.
    func clearState(ofPeer id: UInt32) -> Bool {
        guard let stateTable, Int(id) < entryCount else { return true }
        // Unsealed: the size was checked just before, but a peer can truncate at any moment,
        // so the store itself is guarded against SIGBUS.
        return ivs_state_store32(stateTable.base + Int(id) * 4, sizeIsSealed ? 0 : 1, 0) == 0
    }
}
