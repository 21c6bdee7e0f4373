import IvshmemSpec

/// The 256-byte PCI configuration space of one function, built from the spec tables: the type 0
/// header, then each capability at the profile's offset with its Next pointer chained in list
/// order. Unlisted bytes read 0 and ignore writes (CFG-RSV-1).
public struct ConfigSpace: Sendable {
    public static let size = 256
    public let block: RegisterBlock

    public init(layout: DeviceLayout, tables: SpecTables) throws {
        var fields: [ResolvedField] = []
        let lookup = { (name: String) in layout.parameter(name) }
        for f in tables.header {
            fields.append(try ResolvedField(f, lookup: lookup))
        }
        let caps = layout.capabilities
        for (i, cap) in caps.enumerated() {
            let next = i + 1 < caps.count ? UInt64(caps[i + 1].offset) : 0
            let capLookup = { (name: String) -> UInt64? in name == "next" ? next : layout.parameter(name) }
            let capFields: [RegisterField]
            switch cap.kind {
            case .vendor:
                let hasBase = !layout.profile.sharedMemoryInBAR2
                capFields = tables.vendorCapability.filter { $0.when == nil || ($0.when == "baseAddress" && hasBase) }
            case .msix:
                capFields = tables.msixCapability
            }
            for f in capFields {
                fields.append(try ResolvedField(f, base: cap.offset, lookup: capLookup))
            }
        }
        block = try RegisterBlock(size: Self.size, fields: fields)
    }

    public func read(offset: Int, size: Int) -> UInt32 { UInt32(truncatingIfNeeded: block.read(offset: offset, size: size)) }
}
