/// Which address space an access went to.
public enum AccessSpace: Sendable, Equatable, CustomStringConvertible {
    case config
    case bar(Int)
    case sharedMemory

    public var description: String {
        switch self {
        case .config: return "config"
        case .bar(let n): return "BAR\(n)"
        case .sharedMemory: return "shmem"
        }
    }
}

/// One register-level access, as recorded with a finding.
public struct Access: Sendable, Equatable, CustomStringConvertible {
    public var space: AccessSpace
    public var offset: UInt64
    public var size: Int
    public var isWrite: Bool
    public var value: UInt64?

    public init(space: AccessSpace, offset: UInt64, size: Int, isWrite: Bool, value: UInt64? = nil) {
        self.space = space
        self.offset = offset
        self.size = size
        self.isWrite = isWrite
        self.value = value
    }

    public var description: String {
        let v = value.map { " 0x" + String($0, radix: 16) } ?? ""
        return "\(isWrite ? "write" : "read")\(size * 8) \(space)+0x\(String(offset, radix: 16))\(v)"
    }
}

/// A spec violation a driver committed, with the requirement it breaks. Recorded when the
/// device's configuration has `checking` on.
public struct Finding: Sendable, Equatable, CustomStringConvertible {
    /// spec/ivshmem2.md §0: an access the spec forbids, or one it allows but defines to have no
    /// effect (a driver bug all the same); or something another peer or the server did that
    /// the device survived but the driver should know about (an eventfd that could not be
    /// signalled, shared memory that can shrink under the device): not the driver's fault.
    public enum Kind: String, Sendable { case violation, ineffective, environment }
    public var kind: Kind = .violation
    public var requirement: String
    public var message: String
    public var access: Access?
    public var peer: UInt32

    public var description: String {
        "[\(requirement)\(kind == .violation ? "" : ", \(kind.rawValue)")] peer \(peer): \(message)" + (access.map { " (\($0))" } ?? "")
    }
}
