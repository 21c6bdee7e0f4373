import IvshmemSpec

/// A behaviour profile resolved from `spec/tables/profiles.json`: the points where the spec,
/// Jailhouse and the QEMU RFC device differ (spec/ivshmem2.md, "Deviations and ambiguities").
public struct Profile: Sendable, Equatable {
    public enum CapabilityKind: String, Sendable { case vendor, msix }
    public enum MaskedEventPolicy: String, Sendable {
        /// An event on a masked vector is lost; the PBA reads 0 (spec, Jailhouse). MSIX-PBA-1
        case drop
        /// The pending bit is latched and the message sent on unmask (QEMU RFC device).
        case latch
    }

    public var name: String
    public var summary: String
    /// Capabilities in list order (the first is what the Capabilities Pointer names).
    public var capabilities: [(kind: CapabilityKind, offset: Int)]
    /// `true`: shared memory behind BAR2; `false`: no BAR2, Base Address field in the vendor cap.
    public var sharedMemoryInBAR2: Bool
    public var maxVectors: Int
    public var doorbellVectorMask: UInt32
    public var bar0WriteAliasMask: UInt64
    public var maskedEvents: MaskedEventPolicy
    public var oneShotSurvivesReset: Bool
    public var outputSectionsOverStateTableWhenRWEmpty: Bool
    public var subsystemVendorID: UInt16
    public var subsystemID: UInt16
    public var allowsINTx: Bool
    /// The Interrupt Pin follows the slot the device is plugged into (Jailhouse, CFG-INT-2).
    public var intxPinFromSlot: Bool
    public var allowsIORegisters: Bool
    /// Fixed BAR1 layout (PBA offset, BAR size), or nil for the computed one (MSIX-CAP-4).
    public var fixedMSIXBAR: (pbaOffset: Int, size: UInt64)?

    public static func == (a: Profile, b: Profile) -> Bool {
        a.name == b.name && a.capabilities.map(\.kind) == b.capabilities.map(\.kind)
            && a.capabilities.map(\.offset) == b.capabilities.map(\.offset) && a.sharedMemoryInBAR2 == b.sharedMemoryInBAR2
            && a.maxVectors == b.maxVectors && a.doorbellVectorMask == b.doorbellVectorMask
            && a.bar0WriteAliasMask == b.bar0WriteAliasMask && a.maskedEvents == b.maskedEvents
            && a.oneShotSurvivesReset == b.oneShotSurvivesReset
            && a.outputSectionsOverStateTableWhenRWEmpty == b.outputSectionsOverStateTableWhenRWEmpty
            && a.subsystemVendorID == b.subsystemVendorID && a.subsystemID == b.subsystemID
            && a.allowsINTx == b.allowsINTx && a.intxPinFromSlot == b.intxPinFromSlot && a.allowsIORegisters == b.allowsIORegisters
            && a.fixedMSIXBAR?.pbaOffset == b.fixedMSIXBAR?.pbaOffset && a.fixedMSIXBAR?.size == b.fixedMSIXBAR?.size
    }

    /// The profile names the built-in tables define.
    public static var builtInNames: [String] { SpecTables.builtIn.profiles.keys.sorted() }

    public static func named(_ name: String, in tables: SpecTables = .builtIn) throws -> Profile {
        guard let p = tables.profiles[name] else {
            throw SpecError.unknownProfile(name, known: tables.profiles.keys.sorted())
        }
        return try Profile(name: name, spec: p)
    }

    public init(name: String, spec p: ProfileSpec) throws {
        func number(_ text: String, _ key: String) throws -> UInt64 {
            guard let v = SpecValue.parseNumber(text) else { throw SpecError.invalidValue(field: "profile \(name)", key: key, text: text) }
            return v
        }
        self.name = name
        summary = p.description
        capabilities = try p.capabilities.map { c in
            guard let k = CapabilityKind(rawValue: c.kind) else {
                throw SpecError.invalidValue(field: "profile \(name)", key: "capabilities.kind", text: c.kind)
            }
            let off = try number(c.offset, "capabilities.offset")
            guard off >= 0x40, off <= 0xF0, off % 4 == 0 else {
                throw SpecError.invalidValue(field: "profile \(name)", key: "capabilities.offset", text: c.offset)
            }
            return (k, Int(off))
        }
        guard Set(capabilities.map(\.kind)).count == capabilities.count, capabilities.contains(where: { $0.kind == .vendor }) else {
            throw SpecError.malformed(file: "profiles.json", detail: "profile \(name) must list the vendor capability once and MSI-X at most once")
        }
        switch p.sharedMemory {
        case "bar2": sharedMemoryInBAR2 = true
        case "baseAddress": sharedMemoryInBAR2 = false
        default: throw SpecError.invalidValue(field: "profile \(name)", key: "sharedMemory", text: p.sharedMemory)
        }
        guard (1...1024).contains(p.maxVectors) else {
            throw SpecError.invalidValue(field: "profile \(name)", key: "maxVectors", text: String(p.maxVectors))
        }
        maxVectors = p.maxVectors
        doorbellVectorMask = UInt32(truncatingIfNeeded: try number(p.doorbellVectorMask, "doorbellVectorMask"))
        bar0WriteAliasMask = try number(p.bar0WriteAliasMask, "bar0WriteAliasMask")
        guard let policy = MaskedEventPolicy(rawValue: p.maskedEvents) else {
            throw SpecError.invalidValue(field: "profile \(name)", key: "maskedEvents", text: p.maskedEvents)
        }
        maskedEvents = policy
        oneShotSurvivesReset = p.oneShotSurvivesReset
        outputSectionsOverStateTableWhenRWEmpty = p.outputSectionsOverStateTableWhenRWEmpty
        subsystemVendorID = UInt16(truncatingIfNeeded: try number(p.subsystemVendorID, "subsystemVendorID"))
        subsystemID = UInt16(truncatingIfNeeded: try number(p.subsystemID, "subsystemID"))
        allowsINTx = p.intx
        intxPinFromSlot = p.intxPinFromSlot ?? false
        allowsIORegisters = p.ioRegisters
        if let off = p.msixPBAOffset, let size = p.msixBARSize {
            let o = try number(off, "msixPBAOffset"), sz = try number(size, "msixBARSize")
            // The PBA for the profile's largest table must fit the BAR, be 8-byte aligned (its
            // low bits carry the BIR), and BAR1 is a 32-bit BAR.
            let pbaBytes = UInt64((p.maxVectors + 63) / 64 * 8)
            guard sz.nonzeroBitCount == 1, sz <= 1 << 32, o % 8 == 0, o >= UInt64(p.maxVectors * 16), o <= sz, pbaBytes <= sz - o else {
                throw SpecError.invalidValue(field: "profile \(name)", key: "msixBARSize", text: size)
            }
            fixedMSIXBAR = (Int(o), sz)
        } else {
            fixedMSIXBAR = nil
        }
    }
}
