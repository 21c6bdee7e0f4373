#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// One register (or register field) as the spec tables declare it: where it sits, how wide it
/// is, what it resets to and which bits software may write. Behaviour beyond the generic write
/// rule is named by `hook` and implemented by the device model.
public struct RegisterField: Sendable, Equatable, Codable {
    public var name: String
    public var offset: Int
    public var width: Int
    public var reset: SpecValue
    public var writable: SpecValue
    /// Bits cleared by writing 1 (none of ivshmem's registers has one, but the rule supports it).
    public var writeOneToClear: SpecValue
    /// For BAR0: `false` means the register is write-only and reads return 0.
    public var readable: Bool
    public var requirement: String
    /// Decoded at load time: an unknown name fails here, naming the field.
    public var hook: RegisterHook?
    /// The field exists only when this feature is on (e.g. `baseAddress`).
    public var when: String?

    enum CodingKeys: String, CodingKey {
        case name, offset, width, reset, writable, readable, hook, when
        case writeOneToClear = "w1c"
        case requirement = "req"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        let offsetText = try c.decode(String.self, forKey: .offset)
        guard let off = SpecValue.parseNumber(offsetText) else {
            throw SpecError.invalidValue(field: name, key: "offset", text: offsetText)
        }
        // Register blocks are at most a few KiB; anything larger is a table error, not a trap.
        guard off <= 0xFFFF else { throw SpecError.invalidValue(field: name, key: "offset", text: offsetText) }
        offset = Int(off)
        width = try c.decode(Int.self, forKey: .width)
        guard [1, 2, 4, 8].contains(width) else {
            throw SpecError.invalidValue(field: name, key: "width", text: String(width))
        }
        reset = try SpecValue(text: c.decode(String.self, forKey: .reset), field: name, key: "reset")
        writable = try SpecValue(text: c.decode(String.self, forKey: .writable), field: name, key: "writable")
        writeOneToClear = try SpecValue(
            text: c.decodeIfPresent(String.self, forKey: .writeOneToClear) ?? "0x0", field: name, key: "w1c")
        readable = try c.decodeIfPresent(Bool.self, forKey: .readable) ?? true
        requirement = try c.decode(String.self, forKey: .requirement)
        if let h = try c.decodeIfPresent(String.self, forKey: .hook) {
            guard let known = RegisterHook(rawValue: h) else { throw SpecError.unknownHook(field: name, name: h) }
            hook = known
        } else {
            hook = nil
        }
        when = try c.decodeIfPresent(String.self, forKey: .when)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(String(format: offset), forKey: .offset)
        try c.encode(width, forKey: .width)
        try c.encode(reset.description, forKey: .reset)
        try c.encode(writable.description, forKey: .writable)
        try c.encode(writeOneToClear.description, forKey: .writeOneToClear)
        try c.encode(readable, forKey: .readable)
        try c.encode(requirement, forKey: .requirement)
        try c.encodeIfPresent(hook?.rawValue, forKey: .hook)
        try c.encodeIfPresent(when, forKey: .when)
    }
}

extension String {
    init(format value: Int) { self = "0x" + String(value, radix: 16, uppercase: true) }
}

/// A value in a spec table: a literal number or a named parameter (`@maxPeers`) that the model
/// resolves from the device configuration and profile.
public enum SpecValue: Sendable, Equatable, CustomStringConvertible {
    case literal(UInt64)
    case parameter(String)

    public init(text: String, field: String, key: String) throws {
        if text.hasPrefix("@") {
            let name = String(text.dropFirst())
            guard !name.isEmpty else { throw SpecError.invalidValue(field: field, key: key, text: text) }
            self = .parameter(name)
        } else if let n = SpecValue.parseNumber(text) {
            self = .literal(n)
        } else {
            throw SpecError.invalidValue(field: field, key: key, text: text)
        }
    }

    /// Parses `0x…` hex or plain decimal.
    public static func parseNumber(_ text: String) -> UInt64? {
        let t = text.filter { !$0.isWhitespace }
        if t.hasPrefix("0x") || t.hasPrefix("0X") { return UInt64(t.dropFirst(2), radix: 16) }
        return UInt64(t)
    }

    public var description: String {
        switch self {
        case .literal(let v): return "0x" + String(v, radix: 16, uppercase: true)
        case .parameter(let p): return "@" + p
        }
    }

    /// Resolves the value; `lookup` returns nil for an unknown parameter.
    public func resolve(field: String, _ lookup: (String) -> UInt64?) throws -> UInt64 {
        switch self {
        case .literal(let v): return v
        case .parameter(let p):
            guard let v = lookup(p) else { throw SpecError.unknownParameter(field: field, name: p) }
            return v
        }
    }
}

