/// A PCI bus/device/function address.
public struct BDF: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var bus: UInt8
    public var device: UInt8
    public var function: UInt8

    public init(bus: UInt8 = 0, device: UInt8, function: UInt8 = 0) throws {
        guard device < 32 else { throw PlatformError.invalidAddress("device number \(device) is above 31") }
        guard function < 8 else { throw PlatformError.invalidAddress("function number \(function) is above 7") }
        self.bus = bus
        self.device = device
        self.function = function
    }

    /// Parses `bb:dd.f` (hex), as lspci prints it.
    public init(parsing text: String) throws {
        let parts = text.split(separator: ":")
        guard parts.count == 2, let bus = UInt8(parts[0], radix: 16) else {
            throw PlatformError.invalidAddress("'\(text)' is not a bb:dd.f address")
        }
        let df = parts[1].split(separator: ".")
        guard df.count == 2, let d = UInt8(df[0], radix: 16), let f = UInt8(df[1], radix: 16) else {
            throw PlatformError.invalidAddress("'\(text)' is not a bb:dd.f address")
        }
        try self.init(bus: bus, device: d, function: f)
    }

    public static func < (a: BDF, b: BDF) -> Bool { (a.bus, a.device, a.function) < (b.bus, b.device, b.function) }

    public var description: String {
        func h(_ v: UInt8, _ w: Int) -> String {
            let s = String(v, radix: 16)
            return String(repeating: "0", count: max(0, w - s.count)) + s
        }
        return "\(h(bus, 2)):\(h(device, 2)).\(function)"
    }
}

public enum PlatformError: Error, Equatable, CustomStringConvertible {
    case invalidAddress(String)
    case slotOccupied(BDF)

    public var description: String {
        switch self {
        case .invalidAddress(let m): return "invalid PCI address: \(m)"
        case .slotOccupied(let b): return "a device is already present at \(b)"
        }
    }
}
