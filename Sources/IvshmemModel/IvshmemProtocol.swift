/// The 16-bit protocol number a device reports in its class code (CFG-CLASS-2) and what it means
/// (spec section 10). The device attaches no behaviour to it (PROTO-VAL-7); this type is for the
/// provider and the driver.
public struct IvshmemProtocol: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        case undefined  // PROTO-VAL-1: 0000h
        case virtualEthernet  // PROTO-VAL-2: 0001h
        case reserved  // PROTO-VAL-3: 0002h–3FFFh
        case userDefined  // PROTO-VAL-4: 4000h–7FFFh
        case virtioFrontEnd  // PROTO-VAL-5: 8000h–BFFFh
        case virtioBackEnd  // PROTO-VAL-6: C000h–FFFFh
    }

    /// Bit 14 within the virtio range: back-end (1) or front-end (0). PROTO-VIRTIO-1
    public static let virtioBackEndBit: UInt16 = 0x4000

    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public init(_ rawValue: UInt16) { self.rawValue = rawValue }

    public var kind: Kind {
        switch rawValue {
        case 0x0000: return .undefined
        case 0x0001: return .virtualEthernet
        case 0x0002...0x3FFF: return .reserved
        case 0x4000...0x7FFF: return .userDefined
        case 0x8000...0xBFFF: return .virtioFrontEnd
        default: return .virtioBackEnd
        }
    }

    public var isVirtio: Bool { rawValue >= 0x8000 }
    public var isVirtioBackEnd: Bool { isVirtio && rawValue & Self.virtioBackEndBit != 0 }
    /// The 14 bits both sides of a virtio link share (in practice the virtio device type).
    public var virtioDeviceType: UInt16? { isVirtio ? rawValue & 0x3FFF : nil }
    /// The protocol number of the other side of a virtio link (bit 14 flipped).
    public var virtioCounterpart: IvshmemProtocol? { isVirtio ? IvshmemProtocol(rawValue ^ Self.virtioBackEndBit) : nil }

    /// Whether two peers' protocol numbers belong to one link: equal, or the two sides of
    /// one virtio protocol (DEV-CFG-8 with PROTO-VIRTIO-1).
    public func isCompatible(with other: IvshmemProtocol) -> Bool {
        self == other || virtioCounterpart == other
    }

    public var description: String { "0x" + String(rawValue, radix: 16) + " (\(kind.rawValue))" }
}
