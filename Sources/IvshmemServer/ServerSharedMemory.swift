import IvshmemPosix
import IvshmemSpec
import CIvshmemShim

/// The shared memory the server hands to every peer, and its view of the State Table.
final class ServerSharedMemory {
    /// The descriptor sent with every INIT (WIRE-INIT-1).
    let descriptor: OwnedDescriptor
    /// The State Table mapping (SHM-LAYOUT-8 size).
    private let stateTable: MemoryMapping
    /// How many 32-bit entries the table has room for.
    let entryCount: Int
    /// The object name to unlink at shutdown, for a POSIX object.
    let posixName: String?

    /// Creates or opens the memory, sets it to exactly `size` bytes (SRV-SHM-1) and zeroes
    /// the State Table, also when an existing object held old content (SRV-SHM-2).
    init(backing: SharedMemoryBacking, size: Int, geometry: SharedMemoryGeometry, mode: mode_t) throws {
        let fd: FileDescriptor
        switch backing {
        case .memfd:
            fd = try SharedMemory.createAnonymous(name: "ivshmem2", size: size)
            posixName = nil
        case .posix(let name):
            fd = try SharedMemory.openNamed(name, size: size, mode: mode)
            posixName = name
        case .directory(let path):
            fd = try SharedMemory.createInDirectory(path, size: size, mode: mode)
            posixName = nil
        }
        descriptor = OwnedDescriptor(fd)
        let tableSize = Int(geometry.stateTableSize)
        do { stateTable = try MemoryMapping(fd: fd, size: tableSize, offset: 0, writable: true) } catch {
            // Like a shutdown, a failed start leaves no named object behind (SRV-SIG-1).
            if let name = posixName { try? SharedMemory.unlinkNamed(name) }
            throw error
        }
        entryCount = tableSize / 4
        stateTable.base.initializeMemory(as: UInt8.self, repeating: 0, count: tableSize)
        ivs_full_fence()
    }

    /// Writes 0 into peer `id`'s State Table entry and makes it visible before anything the
    /// caller sends next (SRV-GONE-2 before SRV-GONE-3).
    func clearState(ofPeer id: UInt32) {
        guard Int(id) < entryCount else { return }
        ivs_store32_release(stateTable.base + Int(id) * 4, 0)
        ivs_full_fence()
    }

    /// Peer `id`'s State Table entry (for logs and tests).
    func state(ofPeer id: UInt32) -> UInt32 {
        guard Int(id) < entryCount else { return 0 }
        return ivs_load32_acquire(stateTable.base + Int(id) * 4)
    }
}
