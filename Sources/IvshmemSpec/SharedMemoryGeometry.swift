/// Sizes and offsets of the shared-memory sections (SHM-LAYOUT-*), derived the same way by the
/// server (which creates the memory) and by every device (which maps it), so that both agree
/// without exchanging anything but `maxPeers`, `outputSectionSize` and the memory's size.
///
/// - State Table: 4 KiB for up to 1024 peers (what the RFC device and reference server assume),
///   otherwise `4 * maxPeers` rounded up to the page size.
/// - R/W Section: whatever is left after the state table and the output sections.
/// - Output Sections: `maxPeers` of `outputSectionSize` each, after the R/W section.
public struct SharedMemoryGeometry: Sendable, Equatable, CustomStringConvertible {
    public static let pageSize: UInt64 = 4096
    public static let minPeers: UInt64 = 2
    public static let maxPeers: UInt64 = 65536

    public let maxPeers: UInt64
    public let stateTableSize: UInt64
    public let rwSectionSize: UInt64
    public let outputSectionSize: UInt64

    public var totalSize: UInt64 { stateTableSize + rwSectionSize + maxPeers * outputSectionSize }
    public var rwSectionOffset: UInt64 { stateTableSize }
    public var outputSectionsOffset: UInt64 { stateTableSize + rwSectionSize }
    public func outputSectionOffset(peer: UInt64) -> UInt64 { outputSectionsOffset + peer * outputSectionSize }

    /// The state table size both sides derive from `maxPeers`.
    public static func stateTableSize(maxPeers: UInt64) -> UInt64 {
        max(pageSize, roundUp(maxPeers * 4, to: pageSize))
    }

    public static func roundUp(_ v: UInt64, to page: UInt64) -> UInt64 { (v + page - 1) / page * page }

    /// Explicit sizes (an in-process fabric, or a configuration file).
    public init(maxPeers: UInt64, stateTableSize: UInt64? = nil, rwSectionSize: UInt64, outputSectionSize: UInt64) throws {
        try Self.checkPeers(maxPeers)
        let st = stateTableSize ?? Self.stateTableSize(maxPeers: maxPeers)
        try Self.checkPage(st, "stateTableSize")
        guard st >= maxPeers * 4 else {
            throw GeometryError(parameter: "stateTableSize", message: "state table of \(st) bytes cannot hold \(maxPeers) 32-bit entries")
        }
        try Self.checkPage(rwSectionSize, "rwSectionSize")
        try Self.checkPage(outputSectionSize, "outputSectionSize")
        self.maxPeers = maxPeers
        self.stateTableSize = st
        self.rwSectionSize = rwSectionSize
        self.outputSectionSize = outputSectionSize
        _ = try checkedTotal()
    }

    /// Derives the layout from the size of the memory, as a device attached to a server does.
    public init(totalSize: UInt64, maxPeers: UInt64, outputSectionSize: UInt64) throws {
        try Self.checkPeers(maxPeers)
        try Self.checkPage(outputSectionSize, "outputSectionSize")
        try Self.checkPage(totalSize, "size")
        let st = Self.stateTableSize(maxPeers: maxPeers)
        let (outputs, o1) = maxPeers.multipliedReportingOverflow(by: outputSectionSize)
        let (fixed, o2) = outputs.addingReportingOverflow(st)
        guard !o1, !o2, fixed <= totalSize else {
            throw GeometryError(
                parameter: "size",
                message: "shared memory of \(totalSize) bytes is too small for a \(st)-byte state table and \(maxPeers) output sections of \(outputSectionSize) bytes (needs at least \(o1 || o2 ? "more than 2^64" : String(fixed)) bytes)")
        }
        self.maxPeers = maxPeers
        self.stateTableSize = st
        self.rwSectionSize = totalSize - fixed
        self.outputSectionSize = outputSectionSize
    }

    private func checkedTotal() throws -> UInt64 {
        let (outputs, o1) = maxPeers.multipliedReportingOverflow(by: outputSectionSize)
        let (a, o2) = stateTableSize.addingReportingOverflow(rwSectionSize)
        let (t, o3) = a.addingReportingOverflow(outputs)
        guard !o1, !o2, !o3 else { throw GeometryError(parameter: "outputSectionSize", message: "layout size overflows 64 bits") }
        return t
    }

    private static func checkPeers(_ n: UInt64) throws {
        guard n >= minPeers, n <= maxPeers else {
            throw GeometryError(parameter: "maxPeers", message: "maximum peers must be between \(minPeers) and \(maxPeers), got \(n)")
        }
    }

    private static func checkPage(_ v: UInt64, _ name: String) throws {
        guard v % pageSize == 0 else {
            throw GeometryError(parameter: name, message: "\(name) \(v) is not a multiple of the \(pageSize)-byte page size")
        }
    }

    public var description: String {
        "state table \(stateTableSize) B, R/W section \(rwSectionSize) B, \(maxPeers) output sections of \(outputSectionSize) B (total \(totalSize) B)"
    }
}

/// A layout parameter that does not work, with the parameter's name.
public struct GeometryError: Error, Equatable, CustomStringConvertible {
    public var parameter: String
    public var message: String
    public var description: String { message }
}
