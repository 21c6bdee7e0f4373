import IvshmemPosix
import IvshmemWire

/// Why attaching to a server failed, or what went wrong on an attached link. Each case says
/// what was wrong and with which values; every fd received with a bad message is closed.
public enum AttachError: Error, CustomStringConvertible, Sendable {
    case connect(path: String, SystemCallError)
    case serverClosed(during: String)
    case wire(WireError, during: String)
    case missingSharedMemory
    case sharedMemory(String)
    case configuration(String)
    case system(SystemCallError, during: String)
    case timeout(during: String, seconds: Double)

    public var description: String {
        switch self {
        case .connect(let path, let e): return "cannot connect to server socket \(path): \(e.errno)"
        case .serverClosed(let what): return "server closed the connection while \(what)"
        case .wire(let e, let what): return "bad message from server while \(what): \(e)"
        case .missingSharedMemory: return "INIT arrived without the shared-memory file descriptor (WIRE-CLI-7)"
        case .sharedMemory(let m): return "shared memory from server unusable: \(m)"
        case .configuration(let m): return "server parameters rejected: \(m)"
        case .system(let e, let what): return "\(what): \(e)"
        case .timeout(let what, let seconds): return "timed out after \(seconds) s \(what) (is it an ivshmem v2 server?)"
        }
    }
}

/// Something the link reports after attach: peers coming and going, protocol errors that were
/// survived (WIRE-CLI-17), and the server going away (DEV-PEER-4).
public enum LinkEvent: Sendable, Equatable, CustomStringConvertible {
    /// A peer's eventfd for `vector` arrived (vector 0 makes it active).
    case eventFD(peer: UInt32, vector: UInt32)
    case peerLeft(UInt32)
    case protocolError(String)
    case linkDown(String)

    public var description: String {
        switch self {
        case .eventFD(let p, let v): return "peer \(p) eventfd for vector \(v)"
        case .peerLeft(let p): return "peer \(p) left"
        case .protocolError(let m): return "protocol error (ignored): \(m)"
        case .linkDown(let m): return "link down: \(m)"
        }
    }
}
