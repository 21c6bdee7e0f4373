/// Little-endian field access on byte arrays (the wire is little-endian whatever the host).
/// Public: the harness's hostile peers and servers and the tests build and read raw messages
/// with the same helpers as the codec.

/// The 4 bytes of `value`, least significant first: a u32 field of a raw message.
public func le32(_ value: UInt32) -> [UInt8] {
    var bytes: [UInt8] = []
    bytes.appendLittleEndian(value)
    return bytes
}

/// The 8 bytes of `value`, least significant first: a u64 field of a raw message.
public func le64(_ value: UInt64) -> [UInt8] {
    var bytes: [UInt8] = []
    bytes.appendLittleEndian(value)
    return bytes
}

extension Array where Element == UInt8 {
    public mutating func appendLittleEndian(_ value: UInt32) {
        for shift in stride(from: 0, to: 32, by: 8) { append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
    }

    public mutating func appendLittleEndian(_ value: UInt64) {
        for shift in stride(from: 0, to: 64, by: 8) { append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }
}

extension Collection where Element == UInt8, Index == Int {
    /// The u32 at `offset` from the start; the caller has checked the length.
    public func littleEndianUInt32(at offset: Int) -> UInt32 {
        var value: UInt32 = 0
        for i in 0..<4 { value |= UInt32(self[startIndex + offset + i]) << UInt32(8 * i) }
        return value
    }

    /// The u64 at `offset` from the start; the caller has checked the length.
    public func littleEndianUInt64(at offset: Int) -> UInt64 {
        var value: UInt64 = 0
        for i in 0..<8 { value |= UInt64(self[startIndex + offset + i]) << UInt64(8 * i) }
        return value
    }
}
