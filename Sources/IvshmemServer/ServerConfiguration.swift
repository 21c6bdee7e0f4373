#if canImport(Glibc)
import Glibc
#endif
import IvshmemSpec
import IvshmemWire

/// Where the server's shared memory lives.
public enum SharedMemoryBacking: Equatable, Sendable, CustomStringConvertible {
    /// An anonymous memfd: nothing to clean up (our default when neither `-M` nor `-m` is given).
    case memfd
    /// A POSIX shared-memory object by name (`-M`), unlinked when the server stops.
    case posix(name: String)
    /// A file created and unlinked at once in a directory, e.g. a hugetlbfs mount (`-m`,
    /// SRV-SHM-4).
    case directory(path: String)

    public var description: String {
        switch self {
        case .memfd: return "memfd"
        case .posix(let name): return "POSIX shared memory '\(name)'"
        case .directory(let path): return "file in '\(path)'"
        }
    }
}

/// Which protocol a server speaks: the v2 protocol (spec/ivshmem2.md §11, §12) or the v1 one
/// (spec/ivshmem1.md §6, §7). One event loop, queues and socket handling serve both; only the
/// messages, the ID policy and the State Table differ.
public enum ServerDialect: Equatable, Sendable {
    case v2
    case v1
}

/// Everything the server is started with (spec §12). Defaults are the reference server's
/// (SRV-CFG-1), except the backing: an anonymous memfd rather than the shm object `ivshmem`.
public struct ServerConfiguration: Equatable, Sendable {
    public static let defaultSocketPath = "/tmp/ivshmem_socket"
    public static let defaultSize: UInt64 = 4 * 1024 * 1024

    /// The UNIX socket the server listens on (`-S`).
    public var socketPath: String = ServerConfiguration.defaultSocketPath
    /// The shared memory's backing (`-M`, `-m`, `--memfd`).
    public var backing: SharedMemoryBacking = .memfd
    /// The shared memory's size in bytes (`-l`).
    public var size: UInt64 = ServerConfiguration.defaultSize
    /// Each peer's output section size in bytes (`-o`).
    public var outputSectionSize: UInt64 = 0
    /// How many peers may be connected at once (`-n`).
    public var maxPeers: UInt64 = 2
    /// Interrupt vectors (eventfds) per peer (`-V`).
    public var vectors: UInt64 = 1
    /// The protocol number advertised (`-P`); ≥ 0x8000 is virtio (SRV-VIRTIO-1).
    public var protocolValue: UInt64 = 0
    /// Permissions of the socket file and of a named or file-backed shared memory (SRV-SHM-3).
    public var mode: mode_t = 0o600
    /// Listen backlog.
    public var backlog: Int32 = 128
    /// Messages a peer may have waiting before it is dropped as one that never reads
    /// (SRV-IO-1). Nil: ``defaultQueueLimit``.
    public var queueLimit: Int? = nil
    /// Descriptors a peer may have waiting in its queue before it is dropped as one that does
    /// not read (SRV-IO-4). Nil: ``effectiveQueueDescriptorLimit``'s default.
    public var queueDescriptorLimit: Int? = nil

    /// The protocol spoken (`ivshmem2 server` or `ivshmem2 server-v1`).
    public var dialect: ServerDialect = .v2

    public init() {}

    /// The v1 server's defaults (V1-SRV-CFG-1): the reference's socket, POSIX object `ivshmem`,
    /// 4 MiB, 1 vector. IDs range over 0…65535 (V1-SRV-ID-1), so `maxPeers` is 65536.
    public static func v1() -> ServerConfiguration {
        var config = ServerConfiguration()
        config.dialect = .v1
        config.backing = .posix(name: "ivshmem")
        config.maxPeers = UInt64(V1Message.maxPeerID) + 1
        return config
    }

    /// The queue limit in force: the set-up burst a newcomer gets (INIT and every peer's
    /// eventfds) plus 65536 further messages, so only a peer that stopped reading for a
    /// long time reaches it.
    public var effectiveQueueLimit: Int {
        if let queueLimit { return queueLimit }
        let (burst, overflow) = maxPeers.multipliedReportingOverflow(by: max(vectors, 1))
        return overflow ? Int.max : Int(min(burst, UInt64(Int.max / 2))) + 1 + 65536
    }

    /// The descriptor limit in force (SRV-IO-4): the set-up burst (INIT's shared memory and
    /// every peer's eventfds, 1 + max peers × vectors) plus 4096 more. Queued descriptors of
    /// connected peers cost the server nothing (it holds them anyway), but each one of a
    /// departed peer keeps an eventfd open in the server until the message is sent: without a
    /// bound, one peer that never reads while others come and go exhausts the server's
    /// descriptors and every newcomer is refused. 4096 lets a slow reader fall thousands of
    /// joins and departures behind (SRV-IO-2) while a handful of non-readers stay well below
    /// a usual limit of 20,000 or more descriptors; past it, the heaviest goes first.
    public var effectiveQueueDescriptorLimit: Int {
        if let queueDescriptorLimit { return queueDescriptorLimit }
        let (burst, overflow) = maxPeers.multipliedReportingOverflow(by: max(vectors, 1))
        return overflow ? Int.max : Int(min(burst, UInt64(Int.max / 2))) + 1 + 4096
    }

    /// The descriptor limit for a server with `connected` peers. For v2 it is
    /// ``effectiveQueueDescriptorLimit``; a v1 server admits up to 65536 peers, so a bound from
    /// that number would protect nothing: its default is the set-up of a newcomer among the
    /// peers connected now (1 + connected × vectors) plus the same 4096 (V1-SRV-ROB-1, SRV-IO-4).
    public func queueDescriptorLimit(connected: Int) -> Int {
        if dialect == .v2 || queueDescriptorLimit != nil { return effectiveQueueDescriptorLimit }
        return 1 + (connected + 1) * Int(max(vectors, 1)) + 4096
    }

    /// Whether the protocol is a virtio one (SRV-VIRTIO-1).
    public var isVirtio: Bool { protocolValue >= UInt64(WireConstants.virtioProtocolBase) }

    /// The protocol field peer `id` is sent in INIT: for virtio, bit 0x4000 set for peer 0
    /// (the back-end) and cleared for every other peer (SRV-VIRTIO-1); otherwise unchanged.
    public func advertisedProtocol(forPeer id: UInt32) -> UInt32 {
        let value = UInt32(truncatingIfNeeded: protocolValue)
        guard isVirtio else { return value }
        let frontEnd = value & ~WireConstants.virtioBackendBit
        return id == 0 ? frontEnd | WireConstants.virtioBackendBit : frontEnd
    }

    /// Checks every option up front (SRV-CFG-2, SRV-CFG-3, SRV-VIRTIO-2) and returns the
    /// layout the devices will derive. Each error names the option.
    public func validate() throws(ConfigurationError) -> SharedMemoryGeometry? {
        if dialect == .v1 {
            try validateV1()
            return nil
        }
        let page = SharedMemoryGeometry.pageSize
        try validateBacking()
        guard (SharedMemoryGeometry.minPeers...SharedMemoryGeometry.maxPeers).contains(maxPeers) else {
            throw ConfigurationError(option: "-n/--max-peers", message: "max peers must be between \(SharedMemoryGeometry.minPeers) and \(SharedMemoryGeometry.maxPeers), got \(maxPeers)")
        }
        guard (UInt64(WireConstants.vectorRange.lowerBound)...UInt64(WireConstants.vectorRange.upperBound)).contains(vectors) else {
            throw ConfigurationError(option: "-V/--vectors", message: "vectors must be between \(WireConstants.vectorRange.lowerBound) and \(WireConstants.vectorRange.upperBound), got \(vectors)")
        }
        guard protocolValue <= 0xFFFF else {
            throw ConfigurationError(option: "-P/--protocol", message: "the protocol is a 16-bit number (at most 0xffff), got 0x\(String(protocolValue, radix: 16))")
        }
        if isVirtio && maxPeers > 2 {
            throw ConfigurationError(option: "-P/--protocol", message: "virtio protocols (0x8000…0xffff) support only 2 peers (peer 0 back-end, peer 1 front-end), but max peers is \(maxPeers) (-n)")
        }
        guard size > 0, size % page == 0 else {
            throw ConfigurationError(option: "-l/--size", message: "the shared-memory size must be a positive multiple of the \(page)-byte page size, got \(size)")
        }
        guard size <= UInt64(Int.max) else {
            throw ConfigurationError(option: "-l/--size", message: "the shared-memory size \(size) is too large")
        }
        guard outputSectionSize % page == 0 else {
            throw ConfigurationError(option: "-o/--output-section-size", message: "the output section size must be a multiple of the \(page)-byte page size, got \(outputSectionSize)")
        }
        if let queueDescriptorLimit {
            let setup = 1 + UInt64(maxPeers) * vectors
            guard queueDescriptorLimit >= 0, UInt64(queueDescriptorLimit) >= setup else {
                throw ConfigurationError(option: "--queue-fd-limit", message: "a peer's queue must hold at least its set-up (1 + max peers × vectors = \(setup) descriptors), got \(queueDescriptorLimit)")
            }
        }
        do {
            return try SharedMemoryGeometry(totalSize: size, maxPeers: maxPeers, outputSectionSize: outputSectionSize)
        } catch let error as GeometryError {
            throw ConfigurationError(option: "-l/--size", message: "\(error.message) (-l \(size), -n \(maxPeers), -o \(outputSectionSize))")
        } catch {
            throw ConfigurationError(option: "-l/--size", message: "\(error)")
        }
    }
}

extension ServerConfiguration {
    /// The socket path and the backing's name or directory, for either dialect.
    func validateBacking() throws(ConfigurationError) {
        guard !socketPath.isEmpty else {
            throw ConfigurationError(option: "-S/--socket", message: "the socket path is empty")
        }
        switch backing {
        case .memfd: break
        case .posix(let name):
            let bare = name.hasPrefix("/") ? String(name.dropFirst()) : name
            guard !bare.isEmpty, !bare.contains("/") else {
                throw ConfigurationError(option: "-M/--shm-name", message: "'\(name)' is not a POSIX shared-memory name (one path component, like 'ivshmem')")
            }
        case .directory(let path):
            guard !path.isEmpty else {
                throw ConfigurationError(option: "-m/--shm-dir", message: "the directory is empty")
            }
        }
        guard mode & ~0o777 == 0 else {
            throw ConfigurationError(option: "--mode", message: "the mode must be permission bits (at most 0777), got 0\(String(mode, radix: 8))")
        }
    }

    /// V1-SRV-CFG-2: 1…64 vectors (`-n`), a size that is a power of two of at least a page
    /// (`-l`; QEMU maps the memory as a BAR, which must be a power of two).
    func validateV1() throws(ConfigurationError) {
        try validateBacking()
        guard (1...UInt64(V1Message.maxVectors)).contains(vectors) else {
            throw ConfigurationError(option: "-n/--vectors", message: "vectors must be between 1 and \(V1Message.maxVectors), got \(vectors)")
        }
        let page = SharedMemoryGeometry.pageSize
        guard size >= page, size & (size - 1) == 0, size <= UInt64(Int.max) else {
            throw ConfigurationError(option: "-l/--size", message: "the shared-memory size must be a power of two of at least \(page) bytes (a v1 device maps it as a PCI BAR), got \(size)")
        }
        guard maxPeers >= 1, maxPeers <= UInt64(V1Message.maxPeerID) + 1 else {
            throw ConfigurationError(option: "max peers", message: "a v1 server hands out IDs 0…65535, so at most 65536 peers, got \(maxPeers)")
        }
        if let queueDescriptorLimit, queueDescriptorLimit < 1 + Int(vectors) {
            throw ConfigurationError(option: "--queue-fd-limit", message: "a peer's queue must hold at least its own set-up (1 + vectors = \(1 + vectors) descriptors), got \(queueDescriptorLimit)")
        }
    }
}

/// An option value the server refuses, naming the option.
public struct ConfigurationError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The option as the user typed it, e.g. `-n/--max-peers`.
    public var option: String
    public var message: String

    public init(option: String, message: String) {
        self.option = option
        self.message = message
    }

    public var description: String { "\(option): \(message)" }
}
