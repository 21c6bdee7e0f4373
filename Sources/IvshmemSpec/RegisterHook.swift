/// What a register field is beyond the generic write rule, named by `"hook"` in the tables and
/// decoded once, at load time: an unknown name is a load error, not a silent no-op.
///
/// Most hooks carry behaviour the device model implements in one exhaustive `switch`
/// (`DeviceState`); `peerID` and `maxPeers` carry none and only say which BAR0 register is
/// which, so tools find the registers where the tables put them instead of using literals.
public enum RegisterHook: String, Sendable, CaseIterable, Codable {
    /// Vendor capability: bit 0 enables one-shot interrupt mode (CAP-VS-3, IRQ-ONESHOT-1).
    case privilegedControl
    /// MSI-X Message Control: enable and function mask (MSIX-CAP-2).
    case msixControl
    /// MSI-X table entry: the per-vector mask bit (MSIX-TBL-2).
    case vectorControl
    /// BAR0 ID: this peer's ID (REG-ID-1). Identity only.
    case peerID = "id"
    /// BAR0 Maximum Peers (REG-MAXP-1). Identity only.
    case maxPeers
    /// BAR0 Interrupt Control: interrupt enable, cleared by one-shot delivery (REG-IC-1).
    case interruptControl
    /// BAR0 Doorbell: writing rings a peer's vector (REG-DB-1).
    case doorbell
    /// BAR0 State: written through to the State Table, peers notified (REG-ST-1).
    case state
    /// v1 BAR0 IntrMask: drives the INTx level with IntrStatus (V1-REG-MASK-1, V1-IRQ-INTX-1).
    case intrMask
    /// v1 BAR0 IntrStatus: a read returns and clears it (V1-REG-STAT-1).
    case intrStatus
    /// v1 BAR0 IVPosition: the peer's ID from the server (V1-REG-POS-1). Identity only.
    case ivPosition
    /// v1 BAR0 Doorbell: peer in bits 31:16, vector in 15:0 (V1-REG-DB-1).
    case v1Doorbell

    /// The width in bytes a field carrying this hook must have.
    public var width: Int {
        switch self {
        case .privilegedControl: return 1
        case .msixControl: return 2
        case .vectorControl, .peerID, .maxPeers, .interruptControl, .doorbell, .state,
             .intrMask, .intrStatus, .ivPosition, .v1Doorbell: return 4
        }
    }
}

/// Which hooks each table may carry, and which it must carry (the model relies on them).
public struct HookRules: Sendable {
    public var allowed: Set<RegisterHook>
    public var required: Set<RegisterHook>

    public static let configHeader = HookRules(allowed: [], required: [])
    public static let vendorCapability = HookRules(allowed: [.privilegedControl], required: [.privilegedControl])
    public static let msixCapability = HookRules(allowed: [.msixControl], required: [.msixControl])
    public static let msixTableEntry = HookRules(allowed: [.vectorControl], required: [.vectorControl])
    public static let bar0 = HookRules(allowed: [.peerID, .maxPeers, .interruptControl, .doorbell, .state],
                                       required: [.interruptControl, .doorbell, .state])

    /// The v1 register region (spec/ivshmem1.md §3) and its header (no hooks).
    public static let v1ConfigHeader = HookRules(allowed: [], required: [])
    public static let v1Bar0 = HookRules(allowed: [.intrMask, .intrStatus, .ivPosition, .v1Doorbell],
                                         required: [.intrMask, .intrStatus, .ivPosition, .v1Doorbell])

    /// Checks `fields` of `file` (section `part`): hooks allowed here, each at most once, every
    /// required one present, hooked fields of the right width, and no two fields overlapping.
    public func validate(_ fields: [RegisterField], file: String, part: String) throws {
        var seen: [RegisterHook: String] = [:]
        for f in fields {
            guard let h = f.hook else { continue }
            guard allowed.contains(h) else {
                throw SpecError.inFile(file, .misplacedHook(field: f.name, hook: h.rawValue, part: part))
            }
            if let other = seen[h] { throw SpecError.inFile(file, .duplicateHook(field: f.name, hook: h.rawValue, other: other)) }
            seen[h] = f.name
            guard f.offset % h.width == 0 else {
                throw SpecError.inFile(file, .invalidValue(field: f.name, key: "offset (hook \(h.rawValue) needs a \(h.width)-byte aligned register)", text: String(format: f.offset)))
            }
            guard f.width == h.width else {
                throw SpecError.inFile(file, .invalidValue(field: f.name, key: "width (hook \(h.rawValue) needs \(h.width))", text: String(f.width)))
            }
        }
        for h in required.sorted(by: { $0.rawValue < $1.rawValue }) where seen[h] == nil {
            throw SpecError.inFile(file, .missingHook(hook: h.rawValue, part: part))
        }
        // Fields of one table never overlap (optional fields, `when`, included: they are
        // placed in the same block when their feature is on).
        let sorted = fields.sorted { $0.offset < $1.offset }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.offset + a.width > b.offset {
            throw SpecError.inFile(file, .overlap("'\(b.name)' at 0x\(String(b.offset, radix: 16)) overlaps '\(a.name)' at 0x\(String(a.offset, radix: 16)) width \(a.width) (\(part))"))
        }
    }
}
