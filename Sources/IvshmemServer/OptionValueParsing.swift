/// Parsing of option values the way the reference server's scripts write them.
public enum OptionValueParsing {
    /// A size with an optional binary suffix: `4194304`, `64K`, `1M`, `2G`, `1T` (case-
    /// insensitive, an optional trailing `B`, `iB` accepted: `1MiB`), also `0x10000`.
    /// Returns nil for anything else, or for a value that overflows 64 bits.
    public static func size(_ text: String) -> UInt64? {
        var digits = Substring(text.trimmingWhitespace())
        guard !digits.isEmpty else { return nil }
        var multiplier: UInt64 = 1
        let lower = digits.lowercased()
        var suffixLength = 0
        for (suffix, shift) in [("kib", 10), ("mib", 20), ("gib", 30), ("tib", 40),
                                ("kb", 10), ("mb", 20), ("gb", 30), ("tb", 40),
                                ("k", 10), ("m", 20), ("g", 30), ("t", 40), ("b", 0)] where lower.hasSuffix(suffix) {
            multiplier = 1 << UInt64(shift)
            suffixLength = suffix.count
            break
        }
        if lower.hasPrefix("0x") { suffixLength = 0; multiplier = 1 }  // hex digits include b
        digits = digits.dropLast(suffixLength)
        guard let base = unsigned(String(digits)) else { return nil }
        let (value, overflow) = base.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : value
    }

    /// An unsigned integer as C's `strtoull(…, 0)` reads it (what the reference's
    /// `parse_uint_full(…, 0)` accepts): `0x` hexadecimal, a leading `0` octal, else decimal.
    /// The whole text must be the number.
    public static func unsigned(_ text: String) -> UInt64? {
        let trimmed = text.trimmingWhitespace()
        guard !trimmed.isEmpty else { return nil }
        let lower = trimmed.lowercased()
        if lower.hasPrefix("0x") {
            let hex = lower.dropFirst(2)
            return hex.isEmpty ? nil : UInt64(hex, radix: 16)
        }
        if lower.count > 1 && lower.hasPrefix("0") {
            return UInt64(lower.dropFirst(), radix: 8)
        }
        return UInt64(lower, radix: 10)
    }

    /// A permission mode in octal (`0660`, `660`, `0o660`).
    public static func mode(_ text: String) -> UInt32? {
        var t = Substring(text.trimmingWhitespace().lowercased())
        if t.hasPrefix("0o") { t = t.dropFirst(2) }
        guard !t.isEmpty, let v = UInt32(t, radix: 8), v <= 0o7777 else { return nil }
        return v
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}
