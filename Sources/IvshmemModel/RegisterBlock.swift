import IvshmemSpec

/// A field of a register block after its parameters were resolved.
public struct ResolvedField: Sendable, Equatable {
    public var name: String
    public var offset: Int
    public var width: Int
    public var reset: UInt64
    public var writable: UInt64
    public var writeOneToClear: UInt64
    public var readable: Bool
    public var requirement: String
    public var hook: String?

    public var range: Range<Int> { offset..<(offset + width) }
    public var isReadOnly: Bool { writable == 0 && writeOneToClear == 0 }
}

/// What one write did to one field: the hook (if any) runs on this.
public struct FieldWrite: Sendable, Equatable {
    public var field: ResolvedField
    public var old: UInt64
    public var new: UInt64
    /// Bits the write tried to change in read-only positions (a driver bug when non-zero on a
    /// field that is entirely read-only).
    public var ignoredBits: UInt64
}

/// A little-endian byte array with per-byte reset values and writable / write-1-to-clear masks,
/// driven by one generic write rule (the QEMU `RegisterAccessInfo` idea):
///
///     new = (value & writable) | (old & ~writable);  new &= ~(value & w1c)
///
/// Config space, the MSI-X table and the BAR0 registers are all instances of it; behaviour that
/// is really special (doorbell, state, MSI-X control) is a named hook that runs after the rule.
public struct RegisterBlock: Sendable {
    public private(set) var fields: [ResolvedField]
    private var bytes: [UInt8]
    private var resetBytes: [UInt8]
    private var writableMask: [UInt8]
    private var w1cMask: [UInt8]
    private var readableMask: [Bool]
    /// Index into `fields` for each byte, -1 where no field is declared.
    private var fieldIndex: [Int32]

    public var size: Int { bytes.count }

    public init(size: Int, fields: [ResolvedField]) throws {
        self.fields = []
        bytes = Array(repeating: 0, count: size)
        resetBytes = bytes
        writableMask = bytes
        w1cMask = bytes
        readableMask = Array(repeating: true, count: size)
        fieldIndex = Array(repeating: -1, count: size)
        for f in fields { try add(f) }
    }

    /// Adds a field; fails if it leaves the block or overlaps another field.
    public mutating func add(_ f: ResolvedField) throws {
        guard f.offset >= 0, f.width <= size, f.offset <= size - f.width else {
            throw SpecError.overlap("'\(f.name)' at 0x\(String(f.offset, radix: 16)) width \(f.width) leaves the \(size)-byte block")
        }
        for i in f.range where fieldIndex[i] >= 0 {
            throw SpecError.overlap("'\(f.name)' at 0x\(String(f.offset, radix: 16)) overlaps '\(fields[Int(fieldIndex[i])].name)'")
        }
        let idx = Int32(fields.count)
        fields.append(f)
        for k in 0..<f.width {
            let i = f.offset + k
            let shift = UInt64(k * 8)
            resetBytes[i] = UInt8(truncatingIfNeeded: f.reset >> shift)
            bytes[i] = resetBytes[i]
            writableMask[i] = UInt8(truncatingIfNeeded: f.writable >> shift)
            w1cMask[i] = UInt8(truncatingIfNeeded: f.writeOneToClear >> shift)
            readableMask[i] = f.readable
            fieldIndex[i] = idx
        }
    }

    /// Restores every byte to its reset value.
    public mutating func reset() { bytes = resetBytes }

    /// Reads `size` (1…8) bytes at `offset`, little-endian; write-only bytes read 0; bytes
    /// outside the block read 0.
    public func read(offset: Int, size: Int) -> UInt64 {
        var v: UInt64 = 0
        for k in 0..<size {
            let i = offset + k
            guard i >= 0, i < bytes.count, readableMask[i] else { continue }
            v |= UInt64(bytes[i]) << UInt64(k * 8)
        }
        return v
    }

    /// Raw value of a field, for the model itself (ignores readability).
    public func value(of field: ResolvedField) -> UInt64 { raw(offset: field.offset, size: field.width) }

    public func raw(offset: Int, size: Int) -> UInt64 {
        var v: UInt64 = 0
        for k in 0..<size where offset + k < bytes.count { v |= UInt64(bytes[offset + k]) << UInt64(k * 8) }
        return v
    }

    /// Changes the reset value (and current value) of one byte: a hardware strap such as a pin
    /// wired by the slot, which a reset keeps.
    public mutating func strap(offset: Int, value: UInt64) {
        guard offset >= 0, offset < bytes.count else { return }
        resetBytes[offset] = UInt8(truncatingIfNeeded: value)
        bytes[offset] = resetBytes[offset]
    }

    /// Sets bytes directly, bypassing the masks: for state the device itself changes.
    public mutating func setRaw(offset: Int, size: Int, value: UInt64) {
        for k in 0..<size where offset + k < bytes.count { bytes[offset + k] = UInt8(truncatingIfNeeded: value >> UInt64(k * 8)) }
    }

    /// Applies the generic write rule to `size` bytes at `offset` and reports every field the
    /// write touched, with its value before and after.
    public mutating func write(offset: Int, size: Int, value: UInt64) -> [FieldWrite] {
        // Fields are contiguous byte ranges and bytes are visited in order, so each field's
        // bytes form one run: its old value is read before the run and the result appended
        // after it (one array per write instead of four: this is the register hot path).
        var out: [FieldWrite] = []
        var k = 0
        while k < size {
            let i = offset + k
            guard i >= 0, i < bytes.count else { k += 1; continue }
            let idx = fieldIndex[i]
            guard idx >= 0 else {
                applyRule(byte: i, value: UInt8(truncatingIfNeeded: value >> UInt64(k * 8)))
                k += 1
                continue
            }
            let f = fields[Int(idx)]
            let before = self.value(of: f)
            var ignored: UInt64 = 0
            while k < size, offset + k < bytes.count, fieldIndex[offset + k] == idx {
                let j = offset + k
                let v = UInt8(truncatingIfNeeded: value >> UInt64(k * 8))
                let roChange = (v ^ bytes[j]) & ~writableMask[j] & ~w1cMask[j]
                ignored |= UInt64(roChange) << UInt64((j - f.offset) * 8)
                applyRule(byte: j, value: v)
                k += 1
            }
            out.append(FieldWrite(field: f, old: before, new: self.value(of: f), ignoredBits: ignored))
        }
        return out
    }

    /// The generic write rule on one byte.
    @inline(__always)
    private mutating func applyRule(byte i: Int, value v: UInt8) {
        let wm = writableMask[i]
        var new = (v & wm) | (bytes[i] & ~wm)
        new &= ~(v & w1cMask[i])
        bytes[i] = new
    }

    /// The field covering byte `offset`, if any.
    public func field(at offset: Int) -> ResolvedField? {
        guard offset >= 0, offset < fieldIndex.count, fieldIndex[offset] >= 0 else { return nil }
        return fields[Int(fieldIndex[offset])]
    }

    public func field(hook: String) -> ResolvedField? { fields.first { $0.hook == hook } }

}

extension ResolvedField {
    /// Resolves a table field with a parameter lookup, shifted by `base` (a capability offset).
    init(_ f: RegisterField, base: Int = 0, lookup: (String) -> UInt64?) throws {
        name = f.name
        offset = base + f.offset
        width = f.width
        let widthMask: UInt64 = f.width == 8 ? .max : (1 << UInt64(f.width * 8)) - 1
        reset = try f.reset.resolve(field: f.name, lookup) & widthMask
        writable = try f.writable.resolve(field: f.name, lookup) & widthMask
        writeOneToClear = try f.writeOneToClear.resolve(field: f.name, lookup) & widthMask
        readable = f.readable
        requirement = f.requirement
        hook = f.hook
    }
}
