#if canImport(Glibc)
import Glibc
#endif
import IvshmemSpec
import CIvshmemShim
import Synchronization

/// A mapped shared-memory region. The model never maps memory itself: an in-process fabric
/// allocates it, a socket transport maps the server's fd; `owner` keeps that backing alive.
///
/// Memory whose size is not sealed can be shrunk by another process after it was mapped; a
/// plain access to the lost pages would end this process with SIGBUS. Such memory is
/// `guarded`: every access goes through a C helper that catches the fault and reports it as a
/// failed access instead (SHM-SIZE-1).
public final class SharedMemory: @unchecked Sendable {
    public let base: UnsafeMutableRawPointer
    public let size: Int
    /// Accesses catch SIGBUS (the backing may shrink under us).
    public let guarded: Bool
    private let owner: AnyObject?
    private let release: (@Sendable (UnsafeMutableRawPointer, Int) -> Void)?
    private let faults = Atomic<Int>(0)

    public init(base: UnsafeMutableRawPointer, size: Int, owner: AnyObject?, guarded: Bool = false) {
        self.base = base
        self.size = size
        self.owner = owner
        self.guarded = guarded
        self.release = nil
    }

    /// Accesses that failed because the backing shrank (SHM-SIZE-1).
    public var faultCount: Int { faults.load(ordering: .relaxed) }

    /// Copies `buffer.count` bytes from `offset` (the caller checked the range against `size`);
    /// false when the pages are gone.
    public func read(offset: Int, into buffer: UnsafeMutableRawBufferPointer) -> Bool {
        guard let dst = buffer.baseAddress, buffer.count > 0 else { return true }
        guard guarded else {
            dst.copyMemory(from: base + offset, byteCount: buffer.count)
            return true
        }
        return check(ivs_guarded_copy(dst, base + offset, buffer.count))
    }

    /// Copies `buffer` to `offset` (range checked by the caller); false when the pages are gone.
    public func write(offset: Int, from buffer: UnsafeRawBufferPointer) -> Bool {
        guard let src = buffer.baseAddress, buffer.count > 0 else { return true }
        guard guarded else {
            (base + offset).copyMemory(from: src, byteCount: buffer.count)
            return true
        }
        return check(ivs_guarded_copy(base + offset, src, buffer.count))
    }

    private func check(_ rc: Int32) -> Bool {
        if rc == 0 { return true }
        faults.add(1, ordering: .relaxed)
        return false
    }

    /// Zeroed, page-aligned process memory: the in-process fabric's shared memory. Throws when
    /// the process cannot have that much (calloc zeroes large blocks lazily, so a big layout
    /// that is never touched costs nothing).
    public init(allocating size: Int) throws {
        guard size >= 0, size <= Int.max - 4096, let raw = calloc(1, size + 4096) else {
            throw DeviceConfigurationError(parameter: "sharedMemory", message: "cannot allocate \(size) bytes of shared memory")
        }
        let aligned = UnsafeMutableRawPointer(bitPattern: (Int(bitPattern: raw) + 4095) & ~4095)!
        base = aligned
        self.size = size
        guarded = false
        owner = nil
        let address = Int(bitPattern: raw)  // a plain integer crosses the @Sendable boundary
        release = { _, _ in free(UnsafeMutableRawPointer(bitPattern: address)) }
    }

    deinit { release?(base, size) }

    /// State-table entries are read and written with acquire/release ordering (SHM-ST-*):
    /// a peer that sees the new state after its interrupt also sees what was written before it.
    /// A lost page reads 0.
    public func loadState(peer: UInt32) -> UInt32 {
        var v: UInt32 = 0
        return check(ivs_state_load32(base + Int(peer) * 4, guarded ? 1 : 0, &v)) ? v : 0
    }

    /// False when the page is gone (the store is lost). The same store as the server's
    /// (`ivs_state_store32`): release, then a full fence before any notification.
    @discardableResult
    public func storeState(peer: UInt32, _ value: UInt32) -> Bool {
        check(ivs_state_store32(base + Int(peer) * 4, guarded ? 1 : 0, value))
    }
}

/// Access rights of one peer on a range of shared memory. SHM-*
public enum SectionAccess: String, Sendable { case readOnly = "ro", readWrite = "rw" }

/// One section as a given peer sees it.
public struct SectionView: Sendable, Equatable {
    public var name: String
    public var offset: UInt64
    public var size: UInt64
    public var access: SectionAccess
    public var requirement: String
    /// For output sections: whose it is.
    public var ownerPeer: UInt32?
}

/// The shared-memory sections as peer `viewer` sees them, from the tables' section list and the
/// geometry; answers "may this peer read/write these bytes" in O(1) per section.
public struct SharedMemoryLayout: Sendable {
    public let geometry: SharedMemoryGeometry
    public let viewer: UInt32
    /// Base of the output sections within the region as decoded (normally after the R/W
    /// section; 0 in the qemu-rfc profile when the R/W section is empty — the RFC bug).
    public let outputBase: UInt64
    private let stateSpec: SharedMemorySectionSpec
    private let rwSpec: SharedMemorySectionSpec
    private let outSpec: SharedMemorySectionSpec

    public init(geometry: SharedMemoryGeometry, viewer: UInt32, profile: Profile, tables: SpecTables) throws {
        self.geometry = geometry
        self.viewer = viewer
        guard tables.sections.count == 3, let o = tables.sections.first(where: { $0.perPeer }),
            tables.sections[0].size == "@stateTableSize", tables.sections[1].size == "@rwSectionSize"
        else {
            throw SpecError.malformed(file: "shared-memory.json", detail: "expected State Table, R/W Section and per-peer Output Section, in that order")
        }
        for s in tables.sections {
            for right in [s.others] + (s.owner.map { [$0] } ?? []) where SectionAccess(rawValue: right) == nil {
                throw SpecError.invalidValue(field: s.name, key: "access", text: right)
            }
        }
        stateSpec = tables.sections[0]
        rwSpec = tables.sections[1]
        outSpec = o
        if profile.outputSectionsOverStateTableWhenRWEmpty && geometry.rwSectionSize == 0 && geometry.outputSectionSize > 0 {
            outputBase = 0
        } else {
            outputBase = geometry.outputSectionsOffset
        }
    }

    private func access(_ spec: SharedMemorySectionSpec, owner: UInt32?) -> SectionAccess {
        let text = (owner == viewer ? spec.owner : nil) ?? spec.others
        return SectionAccess(rawValue: text) ?? .readOnly
    }

    /// The section containing `offset` (output sections win where the RFC bug overlays them).
    public func section(at offset: UInt64) -> SectionView? {
        let g = geometry
        if g.outputSectionSize > 0, offset >= outputBase, offset < outputBase + g.maxPeers * g.outputSectionSize {
            let peer = (offset - outputBase) / g.outputSectionSize
            return SectionView(
                name: "\(outSpec.name) \(peer)", offset: outputBase + peer * g.outputSectionSize, size: g.outputSectionSize,
                access: access(outSpec, owner: UInt32(peer)), requirement: outSpec.req, ownerPeer: UInt32(peer))
        }
        if offset < g.stateTableSize {
            return SectionView(name: stateSpec.name, offset: 0, size: g.stateTableSize, access: access(stateSpec, owner: nil), requirement: stateSpec.req, ownerPeer: nil)
        }
        if offset >= g.rwSectionOffset, offset < g.rwSectionOffset + g.rwSectionSize {
            return SectionView(name: rwSpec.name, offset: g.rwSectionOffset, size: g.rwSectionSize, access: access(rwSpec, owner: nil), requirement: rwSpec.req, ownerPeer: nil)
        }
        return nil
    }

    /// The first section in `range` that does not allow the access, or nil when all do.
    /// Bytes outside every section count as not allowed (`section` nil in the result).
    public func denial(offset: UInt64, length: UInt64, write: Bool) -> (offset: UInt64, section: SectionView?)? {
        var at = offset
        let end = offset + length
        while at < end {
            guard let s = section(at: at) else { return (at, nil) }
            if write && s.access == .readOnly { return (at, s) }
            at = s.offset + s.size
        }
        return nil
    }

    /// All sections in address order, as this peer sees them.
    public var sections: [SectionView] {
        var out: [SectionView] = []
        var at: UInt64 = 0
        while let s = section(at: at), at < geometry.totalSize {
            out.append(s)
            at = s.offset + s.size
        }
        return out
    }
}
