import ArgumentParser
import IvshmemServer
#if canImport(Glibc)
import Glibc
#endif

/// The options `ivshmem2 server` and `ivshmem2 server-v1` share, with the reference servers'
/// letters: the socket, the shared memory's backing, detaching, logging, permissions and the
/// queue bound (SRV-CFG-1, V1-SRV-CFG-1).
struct ServerCommonOptions: ParsableArguments {
    @Option(name: [.customShort("S", allowingJoined: true), .customLong("socket")],
            help: "Path of the UNIX socket to listen on.")
    var socket: String = ServerConfiguration.defaultSocketPath

    @Option(name: [.customShort("M", allowingJoined: true), .customLong("shm-name")],
            help: "POSIX shared-memory object to use (created if missing, unlinked at exit).")
    var shmName: String?

    @Option(name: [.customShort("m", allowingJoined: true), .customLong("shm-dir")],
            help: "Directory (e.g. a hugetlbfs mount) in which to create the shared memory as an unlinked file.")
    var shmDir: String?

    @Flag(name: .customLong("memfd"), help: "Back the shared memory with a sealed anonymous memfd (the v2 server's default; the v1 server's is the object 'ivshmem').")
    var memfd = false

    @Flag(name: [.customShort("F"), .customLong("foreground")], help: "Stay in the foreground (default: detach).")
    var foreground = false

    @Option(name: [.customShort("p", allowingJoined: true), .customLong("pid-file")],
            help: "Where to write the pid when detaching.")
    var pidFile: String = "/var/run/ivshmem-server.pid"

    @Flag(name: [.customShort("v"), .customLong("verbose")], help: "Log every connect, disconnect and message.")
    var verbose = false

    @Option(name: .customLong("mode"), help: "Permissions (octal) of the socket and of a named or file-backed shared memory.")
    var mode: String = "0600"

    @Option(name: .customLong("queue-fd-limit"),
            help: "Descriptors a peer may have waiting before it is dropped as one that does not read (default: its set-up plus 4096).")
    var queueDescriptorLimit: Int?

    /// Set by the detaching parent: the child writes "ok" here once it listens.
    @Option(name: .customLong("ready-fd"), help: .hidden)
    var readyFD: Int32?

    @Option(name: .customLong("log-file"),
            help: "Without -F: where the detached server's log goes (default: discarded; start-up errors still show on the terminal).")
    var logFile: String?

    @OptionGroup var logging: LoggingOptions

    /// Puts the socket, backing (`defaultBacking` when none is chosen), mode and queue bound
    /// into `config`.
    private func apply(to config: inout ServerConfiguration, defaultBacking: SharedMemoryBacking) throws {
        config.socketPath = socket
        guard [shmName != nil, shmDir != nil, memfd].filter({ $0 }).count <= 1 else {
            throw ValidationError("-M/--shm-name, -m/--shm-dir and --memfd choose the shared-memory backing: give at most one")
        }
        if let shmName { config.backing = .posix(name: shmName) }
        else if let shmDir { config.backing = .directory(path: shmDir) }
        else if memfd { config.backing = .memfd }
        else { config.backing = defaultBacking }
        guard let modeBits = OptionValueParsing.mode(mode) else {
            throw ValidationError("--mode: cannot parse '\(mode)': expected octal permissions like 0600 or 0660")
        }
        config.mode = mode_t(modeBits)
        config.queueDescriptorLimit = queueDescriptorLimit
    }

    /// `base` with these options, the `-l/--size` text and the command's own options (put in
    /// by `fill`), validated (SRV-CFG-2, V1-SRV-CFG-2): every error names its option.
    func configuration(_ base: ServerConfiguration, defaultBacking: SharedMemoryBacking, size: String,
                       _ fill: (inout ServerConfiguration) throws -> Void) throws -> ServerConfiguration {
        var config = base
        try apply(to: &config, defaultBacking: defaultBacking)
        config.size = try Self.parse(size, OptionValueParsing.size, option: "-l/--size", expecting: "a size like 4194304, 64K, 1M or 2G")
        try fill(&config)
        do {
            _ = try config.validate()
        } catch {
            throw ValidationError(error.description)
        }
        return config
    }

    /// An option's value through `parser`, or an error naming the option and what it expects.
    static func parse(_ text: String, _ parser: (String) -> UInt64?, option: String, expecting: String) throws -> UInt64 {
        guard let value = parser(text) else {
            throw ValidationError("\(option): cannot parse '\(text)': expected \(expecting)")
        }
        return value
    }

    /// How to start the server these options describe.
    func launcher(name: String) -> ServerLauncher {
        ServerLauncher(name: name, level: logging.level(default: verbose ? .debug : .info), foreground: foreground, pidFile: pidFile, readyFD: readyFD, logFile: logFile)
    }
}
