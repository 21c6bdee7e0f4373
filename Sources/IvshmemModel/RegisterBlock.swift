import CIvshmemShim
import IvshmemSpec

/// A field of a register block after its parameters were resolved. Names and requirement IDs
/// are side data for findings, traces and dumps; the access path uses the block's integer
/// tables and `hook`.
public struct ResolvedField: Sendable, Equatable {
    public var name: String
    public var offset: Int
    public var width: Int
    public var reset: UInt64
    public var writable: UInt64
    public var writeOneToClear: UInt64
    public var readable: Bool
    public var requirement: String
    public var hook: RegisterHook?

    public var range: Range<Int> { offset..<(offset + width) }
    public var isReadOnly: Bool { writable == 0 && writeOneToClear == 0 }
}

/// What one write did to one field: integers only, so reporting it allocates nothing. `index`
/// selects the field in ``RegisterMap/fields``.
public struct FieldWrite: Sendable, Equatable {
    public var index: Int
    public var old: UInt64
    public var new: UInt64
    /// Bits the write tried to change in read-only positions (a driver bug when non-zero on a
    /// field that is entirely read-only).
    public var ignoredBits: UInt64
}

/// The immutable, compiled form of a register table: per 32-bit word the writable,
/// write-1-to-clear and readable masks and the reset value, per byte the field it belongs to,
/// and per hook the field carrying it. Built once per device from the resolved tables and
/// shared by every thread without a lock.
public final class RegisterMap: @unchecked Sendable {
    /// Bytes in the block (a multiple of 4 is allocated; bytes past `size` never decode).
    public let size: Int
    let wordCount: Int
    /// Hot data, integer only (allocated once, never written after `init`).
    let writable: UnsafeMutablePointer<UInt32>
    let writeOneToClear: UnsafeMutablePointer<UInt32>
    let readable: UnsafeMutablePointer<UInt32>
    let resetWords: UnsafeMutablePointer<UInt32>
    /// Index into `fields` for each byte, -1 where no field is declared.
    let fieldIndex: UnsafeMutablePointer<Int16>
    /// Offset of the field with each hook (by `RegisterHook` case order), -1 when absent.
    private let hookOffsets: [Int]
    /// Side table: names, requirement IDs, resolved values.
    public let fields: [ResolvedField]
    /// The integer-only part of each field, for the access path (no reference counting).
    public let info: [FieldInfo]

    /// Where a field is and what it is, without its names.
    public struct FieldInfo: Sendable, Equatable {
        public let offset: Int
        public let width: Int
        public let hook: RegisterHook?
        public let isReadOnly: Bool
    }

    /// Compiles `fields` into a `size`-byte map; fails when a field leaves the block or two
    /// overlap, naming them.
    public init(size: Int, fields: [ResolvedField]) throws {
        precondition(size >= 0 && size <= 1 << 20)
        self.size = size
        wordCount = (size + 3) / 4
        writable = .allocate(capacity: max(wordCount, 1))
        writeOneToClear = .allocate(capacity: max(wordCount, 1))
        readable = .allocate(capacity: max(wordCount, 1))
        resetWords = .allocate(capacity: max(wordCount, 1))
        fieldIndex = .allocate(capacity: max(size, 1))
        for p in [writable, writeOneToClear, resetWords] { p.initialize(repeating: 0, count: max(wordCount, 1)) }
        readable.initialize(repeating: .max, count: max(wordCount, 1))
        fieldIndex.initialize(repeating: -1, count: max(size, 1))
        var hooks = Array(repeating: -1, count: RegisterHook.allCases.count)
        self.fields = fields
        info = fields.map { FieldInfo(offset: $0.offset, width: $0.width, hook: $0.hook, isReadOnly: $0.isReadOnly) }
        guard fields.count < Int(Int16.max) else { throw SpecError.overlap("\(fields.count) fields in one block") }
        for (n, f) in fields.enumerated() {
            guard f.offset >= 0, f.width <= size, f.offset <= size - f.width else {
                throw SpecError.overlap("'\(f.name)' at 0x\(String(f.offset, radix: 16)) width \(f.width) leaves the \(size)-byte block")
            }
            for i in f.range where fieldIndex[i] >= 0 {
                throw SpecError.overlap("'\(f.name)' at 0x\(String(f.offset, radix: 16)) overlaps '\(fields[Int(fieldIndex[i])].name)'")
            }
            for k in 0..<f.width {
                let i = f.offset + k
                let w = i >> 2
                let shift = UInt32((i & 3) * 8)
                func lane(_ v: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: v >> UInt64(k * 8)) & 0xFF }
                resetWords[w] |= lane(f.reset) << shift
                writable[w] |= lane(f.writable) << shift
                writeOneToClear[w] |= lane(f.writeOneToClear) << shift
                if !f.readable { readable[w] &= ~(0xFF << shift) }
                fieldIndex[i] = Int16(n)
            }
            if let h = f.hook { hooks[Self.slot(h)] = f.offset }
        }
        hookOffsets = hooks
    }

    deinit {
        writable.deallocate()
        writeOneToClear.deallocate()
        readable.deallocate()
        resetWords.deallocate()
        fieldIndex.deallocate()
    }

    private static func slot(_ h: RegisterHook) -> Int { RegisterHook.allCases.firstIndex(of: h)! }

    /// The offset of the field carrying `hook`, if the tables declare one.
    public func offset(of hook: RegisterHook) -> Int? {
        let o = hookOffsets[Self.slot(hook)]
        return o >= 0 ? o : nil
    }

    /// The field covering byte `offset`, if any.
    public func field(at offset: Int) -> ResolvedField? {
        guard let i = index(at: offset) else { return nil }
        return fields[i]
    }

    @inline(__always)
    public func index(at offset: Int) -> Int? {
        guard offset >= 0, offset < size else { return nil }
        let i = fieldIndex[offset]
        return i >= 0 ? Int(i) : nil
    }

    public func field(hook: RegisterHook) -> ResolvedField? { fields.first { $0.hook == hook } }
}

/// A register block's live bytes over its ``RegisterMap``, driven by one generic write rule
/// (the QEMU `RegisterAccessInfo` idea):
///
///     new = (value & writable) | (old & ~writable);  new &= ~(value & w1c)
///
/// Config space, the MSI-X table and the BAR0 registers are all instances of it; behaviour that
/// is really special (doorbell, state, MSI-X control) is a ``RegisterHook`` the device runs
/// after the rule.
///
/// Concurrency: the bytes are 32-bit words. Reads (`read`, `raw`) are atomic loads and take no
/// lock; `write` and `setRaw` change a word with compare-and-swap, so concurrent writers never
/// lose each other's bytes and every write is one atomic step per word. The owning device
/// decides which writes also need its lock (hooks whose effects must stay in order with the
/// register, findings); `reset` and `strap` run under that lock.
public final class RegisterBlock: @unchecked Sendable {
    public let map: RegisterMap
    private let words: UnsafeMutablePointer<UInt32>
    /// Reset values, starting as the map's; a strap changes them (owner's lock).
    private let resetWords: UnsafeMutablePointer<UInt32>

    public var size: Int { map.size }
    public var fields: [ResolvedField] { map.fields }

    public init(map: RegisterMap) {
        self.map = map
        let n = max(map.wordCount, 1)
        words = .allocate(capacity: n)
        resetWords = .allocate(capacity: n)
        resetWords.initialize(from: map.resetWords, count: n)
        words.initialize(from: map.resetWords, count: n)
    }

    public convenience init(size: Int, fields: [ResolvedField]) throws {
        self.init(map: try RegisterMap(size: size, fields: fields))
    }

    deinit {
        words.deallocate()
        resetWords.deallocate()
    }

    @inline(__always) private func load(_ w: Int) -> UInt32 { ivs_load32_acquire(words + w) }
    @inline(__always) private func store(_ w: Int, _ v: UInt32) { ivs_store32_release(words + w, v) }

    @inline(__always)
    static func laneMask(_ bytes: Int) -> UInt64 { bytes >= 8 ? .max : (1 << UInt64(bytes * 8)) - 1 }

    /// Restores every byte to its reset value.
    public func reset() {
        for w in 0..<map.wordCount { store(w, resetWords[w]) }
    }

    /// Reads `size` (1…8) bytes at `offset`, little-endian; write-only bytes read 0; bytes
    /// outside the block read 0. Lock-free.
    @inline(__always)
    public func read(offset: Int, size: Int) -> UInt64 {
        let lane = offset & 3
        if offset >= 0, size > 0, lane + size <= 4, offset + size <= map.size {
            let w = offset >> 2
            let v = load(w) & map.readable[w]
            return UInt64(v >> UInt32(lane * 8)) & Self.laneMask(size)
        }
        return bytes(offset: offset, size: size, readableOnly: true)
    }

    /// Raw value of `size` bytes, for the model itself (ignores readability). Lock-free.
    @inline(__always)
    public func raw(offset: Int, size: Int) -> UInt64 {
        let lane = offset & 3
        if offset >= 0, size > 0, lane + size <= 4, offset + size <= map.size {
            return UInt64(load(offset >> 2) >> UInt32(lane * 8)) & Self.laneMask(size)
        }
        return bytes(offset: offset, size: size, readableOnly: false)
    }

    /// Raw value of a field, for the model itself (ignores readability).
    public func value(of field: ResolvedField) -> UInt64 { raw(offset: field.offset, size: field.width) }

    private func bytes(offset: Int, size: Int, readableOnly: Bool) -> UInt64 {
        var v: UInt64 = 0
        for k in 0..<min(max(size, 0), 8) {
            let i = offset + k
            guard i >= 0, i < map.size else { continue }
            let shift = UInt32((i & 3) * 8)
            var b = load(i >> 2) >> shift & 0xFF
            if readableOnly { b &= map.readable[i >> 2] >> shift & 0xFF }
            v |= UInt64(b) << UInt64(k * 8)
        }
        return v
    }

    /// Changes the reset value (and current value) of one byte: a hardware strap such as a pin
    /// wired by the slot, which a reset keeps.
    public func strap(offset: Int, value: UInt64) {
        guard offset >= 0, offset < map.size else { return }
        let w = offset >> 2, shift = UInt32((offset & 3) * 8)
        let b = UInt32(truncatingIfNeeded: value) & 0xFF
        resetWords[w] = resetWords[w] & ~(0xFF << shift) | b << shift
        store(w, load(w) & ~(0xFF << shift) | b << shift)
    }

    /// Sets bytes directly, bypassing the masks: for state the device itself changes.
    public func setRaw(offset: Int, size: Int, value: UInt64) {
        for k in 0..<min(max(size, 0), 8) {
            let i = offset + k
            guard i >= 0, i < map.size else { continue }
            let w = i >> 2, shift = UInt32((i & 3) * 8)
            let b = UInt32(truncatingIfNeeded: value >> UInt64(k * 8)) & 0xFF
            var old = load(w)
            while ivs_cas32(words + w, &old, old & ~(0xFF << shift) | b << shift) == 0 {}
        }
    }

    /// Clears `mask` in the 32-bit word at `offset` (4-aligned) in one atomic step, whatever
    /// other writers do to the word meanwhile: for bits the device itself clears (one-shot).
    public func clearBits(offset: Int, mask: UInt32) {
        guard offset >= 0, offset & 3 == 0, offset < map.size else { return }
        let w = offset >> 2
        var old = load(w)
        while old & mask != 0 && ivs_cas32(words + w, &old, old & ~mask) == 0 {}
    }

    /// Applies the generic write rule to `size` bytes at `offset` and reports every field the
    /// write touched to `touched`, with its value before and after. Allocates nothing: this is
    /// the register hot path.
    @inline(__always)
    public func write(offset: Int, size: Int, value: UInt64, _ touched: (FieldWrite, RegisterMap.FieldInfo) -> Void) {
        // Fields are contiguous byte ranges, so the bytes of one field form one run: its old
        // value is read before the run and the result reported after it. Bytes without a field
        // have all-zero masks: the rule leaves them alone.
        // Fast path: the access lies in one word and in one field (every access of a driver
        // that follows the spec): one compare-and-swap, no loops.
        let lane = offset & 3
        if offset >= 0, size > 0, lane + size <= 4, offset + size <= map.size, let idx = map.index(at: offset) {
            let f = map.info[idx]
            let fieldLane = f.offset & 3
            if offset + size <= f.offset + f.width, fieldLane + f.width <= 4 {
                let w = offset >> 2
                let m = UInt32(truncatingIfNeeded: Self.laneMask(size)) << UInt32(lane * 8)
                let v = UInt32(truncatingIfNeeded: value) << UInt32(lane * 8) & m
                let (old, new) = applyRule(word: w, lanes: m, value: v)
                let fieldShift = UInt32(fieldLane * 8)
                let fieldMask = Self.laneMask(f.width)
                let readOnly = m & ~map.writable[w] & ~map.writeOneToClear[w]
                touched(FieldWrite(index: idx, old: UInt64(old >> fieldShift) & fieldMask, new: UInt64(new >> fieldShift) & fieldMask,
                                   ignoredBits: UInt64(((v ^ old) & readOnly) >> fieldShift)), f)
                return
            }
        }
        var k = 0
        let n = min(max(size, 0), 8)
        while k < n {
            let i = offset + k
            guard let idx = map.index(at: i) else { k += 1; continue }
            var end = k + 1
            while end < n, offset + end < map.size, map.fieldIndex[offset + end] == Int16(idx) { end += 1 }
            let f = map.info[idx]
            let rawBefore = raw(offset: f.offset, size: f.width)
            let r = applyRule(from: i, count: end - k, value: value >> UInt64(k * 8))
            let rawAfter = raw(offset: f.offset, size: f.width)
            // The run's bytes as the compare-and-swap saw them; the rest of the field (a
            // partial write) as read around it.
            let shift = UInt64((i - f.offset) * 8)
            let runMask = Self.laneMask(end - k) << shift
            touched(FieldWrite(index: idx, old: rawBefore & ~runMask | r.old << shift, new: rawAfter & ~runMask | r.new << shift,
                               ignoredBits: r.ignored << shift), f)
            k = end
        }
    }

    /// The generic write rule on the `lanes` of word `w`, in one compare-and-swap (retried when
    /// another writer changed the word meanwhile). Returns the word before and after.
    @inline(__always)
    private func applyRule(word w: Int, lanes m: UInt32, value v: UInt32) -> (old: UInt32, new: UInt32) {
        let wm = map.writable[w] & m
        let c = map.writeOneToClear[w] & m
        var old = load(w)
        var new: UInt32
        repeat {
            new = (v & wm) | (old & ~wm)
            new &= ~(v & c)
        } while new != old && ivs_cas32(words + w, &old, new) == 0
        return (old, new)
    }

    /// Applies the rule to `count` bytes from byte `i`, one compare-and-swap per word; returns
    /// those bytes before and after, and the bits the value tried to change in read-only
    /// positions (all relative to byte `i`).
    @inline(__always)
    private func applyRule(from i: Int, count: Int, value: UInt64) -> (old: UInt64, new: UInt64, ignored: UInt64) {
        var done = 0
        var result: (old: UInt64, new: UInt64, ignored: UInt64) = (0, 0, 0)
        while done < count {
            let b = i + done
            let w = b >> 2
            let lane = b & 3
            let bytes = min(4 - lane, count - done)
            let shift = UInt32(lane * 8)
            let m = UInt32(truncatingIfNeeded: Self.laneMask(bytes)) << shift
            let v = UInt32(truncatingIfNeeded: value >> UInt64(done * 8)) << shift & m
            let readOnly = m & ~map.writable[w] & ~map.writeOneToClear[w]
            let (old, new) = applyRule(word: w, lanes: m, value: v)
            let at = UInt64(done * 8)
            result.old |= UInt64((old & m) >> shift) << at
            result.new |= UInt64((new & m) >> shift) << at
            result.ignored |= UInt64(((v ^ old) & readOnly) >> shift) << at
            done += bytes
        }
        return result
    }

    /// The field covering byte `offset`, if any.
    public func field(at offset: Int) -> ResolvedField? { map.field(at: offset) }
    public func field(hook: RegisterHook) -> ResolvedField? { map.field(hook: hook) }
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
