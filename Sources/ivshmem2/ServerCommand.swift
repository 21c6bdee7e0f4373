import ArgumentParser
import IvshmemPosix
import IvshmemServer
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// `ivshmem2 server`: the ivshmem v2 server, option-compatible with the reference
/// `ivshmem2-server` (same short options, same defaults but the memfd backing), so that
/// scripts written for it keep working (spec §12).
struct ServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server",
        abstract: "Run the ivshmem v2 server (option-compatible with the reference ivshmem2-server).",
        discussion: """
            Peers (devices, `ivshmem2 peer`, QEMU's ivshmem2 device) connect to the UNIX
            socket and receive the shared memory and every other peer's eventfds.

            Examples:
              ivshmem2 server -F -S /tmp/ivshmem_socket -n 4 -V 2
              ivshmem2 server -F -S /tmp/sock -m /dev/hugepages -l 2M -o 64K

            Without -F the server detaches (new session) and writes its pid to the pid
            file. Sizes take K, M and G suffixes; numbers take 0x for hexadecimal.
            SIGTERM or SIGINT stop it cleanly: peers see the hang-up, the socket and a
            named shm are removed.
            """)

    @Option(name: [.customShort("S", allowingJoined: true), .customLong("socket")],
            help: "Path of the UNIX socket to listen on.")
    var socket: String = ServerConfiguration.defaultSocketPath

    @Option(name: [.customShort("M", allowingJoined: true), .customLong("shm-name")],
            help: "POSIX shared-memory object to use (created if missing, unlinked at exit).")
    var shmName: String?

    @Option(name: [.customShort("m", allowingJoined: true), .customLong("shm-dir")],
            help: "Directory (e.g. a hugetlbfs mount) in which to create the shared memory as an unlinked file.")
    var shmDir: String?

    @Flag(name: .customLong("memfd"), help: "Back the shared memory with an anonymous memfd (the default when neither -M nor -m is given).")
    var memfd = false

    @Option(name: [.customShort("l", allowingJoined: true), .customLong("size")],
            help: "Size of the shared memory (K/M/G suffixes; a page multiple).")
    var size: String = "4M"

    @Option(name: [.customShort("o", allowingJoined: true), .customLong("output-section-size")],
            help: "Size of each peer's output section (K/M/G suffixes; a page multiple).")
    var outputSectionSize: String = "0"

    @Option(name: [.customShort("n", allowingJoined: true), .customLong("max-peers")],
            help: "Maximum number of peers (2…65536).")
    var maxPeers: String = "2"

    @Option(name: [.customShort("V", allowingJoined: true), .customLong("vectors")],
            help: "Interrupt vectors per peer (1…1024).")
    var vectors: String = "1"

    @Option(name: [.customShort("P", allowingJoined: true), .customLong("protocol")],
            help: "16-bit protocol to advertise (0x… or decimal). Virtio (0x8000…0xffff): at most 2 peers; peer 0 is the back-end.")
    var protocolValue: String = "0"

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
            help: "Descriptors a peer may have waiting before it is dropped as one that does not read (default: 1 + max peers × vectors + 4096).")
    var queueDescriptorLimit: Int?

    /// Set by the detaching parent: the child writes "ok" here once it listens.
    @Option(name: .customLong("ready-fd"), help: .hidden)
    var readyFD: Int32?

    // MARK: Validation (SRV-CFG-2)

    func validate() throws {
        _ = try makeConfiguration()
    }

    func makeConfiguration() throws -> ServerConfiguration {
        var config = ServerConfiguration()
        config.socketPath = socket
        let backings = [shmName != nil, shmDir != nil, memfd].filter { $0 }.count
        guard backings <= 1 else {
            throw ValidationError("-M/--shm-name, -m/--shm-dir and --memfd choose the shared-memory backing: give at most one")
        }
        if let shmName { config.backing = .posix(name: shmName) }
        else if let shmDir { config.backing = .directory(path: shmDir) }
        else { config.backing = .memfd }
        config.size = try parse(size, OptionValueParsing.size, option: "-l/--size", expecting: "a size like 4194304, 64K, 1M or 2G")
        config.outputSectionSize = try parse(outputSectionSize, OptionValueParsing.size, option: "-o/--output-section-size", expecting: "a size like 0, 4K or 64K")
        config.maxPeers = try parse(maxPeers, OptionValueParsing.unsigned, option: "-n/--max-peers", expecting: "a number")
        config.vectors = try parse(vectors, OptionValueParsing.unsigned, option: "-V/--vectors", expecting: "a number")
        config.protocolValue = try parse(protocolValue, OptionValueParsing.unsigned, option: "-P/--protocol", expecting: "a number like 0x4001 or 16385")
        guard let modeBits = OptionValueParsing.mode(mode) else {
            throw ValidationError("--mode: cannot parse '\(mode)': expected octal permissions like 0600 or 0660")
        }
        config.mode = mode_t(modeBits)
        config.queueDescriptorLimit = queueDescriptorLimit
        do {
            _ = try config.validate()
        } catch {
            throw ValidationError(error.description)
        }
        return config
    }

    private func parse(_ text: String, _ parser: (String) -> UInt64?, option: String, expecting: String) throws -> UInt64 {
        guard let value = parser(text) else {
            throw ValidationError("\(option): cannot parse '\(text)': expected \(expecting)")
        }
        return value
    }

    // MARK: Running

    func run() throws {
        // A parent (a test runner's thread) may have left signals blocked.
        try Signals.unblockAll()
        let config = try makeConfiguration()
        if !foreground {
            try detach()
            return
        }
        let level: Logger.Level = verbose ? .debug : .info
        LoggingSystem.bootstrap { label in StderrLogHandler(label: label, logLevel: level) }
        var logger = Logger(label: "ivshmem2.server")
        logger.logLevel = level

        do {
            let limit = try ResourceLimits.raiseOpenFilesToMaximum()
            logger.debug("open file limit", metadata: ["RLIMIT_NOFILE": "\(limit)"])
        } catch {
            logger.warning("cannot raise the open file limit", metadata: ["error": "\(error)"])
        }
        try Signals.ignoreBrokenPipe()

        let server: IvshmemServer
        do {
            server = try IvshmemServer(configuration: config, logger: logger)
        } catch {
            writeStderr("ivshmem2 server: cannot start: \(error)\n")
            throw ExitCode(1)
        }
        try server.installTerminationSignalHandler()
        if let readyFD {
            let fd = FileDescriptor(rawValue: readyFD)
            try? fd.writeAll("ok\n")
            fd.closeQuietly()
        }
        do {
            try server.run()
        } catch {
            writeStderr("ivshmem2 server: event loop failed: \(error)\n")
            throw ExitCode(1)
        }
    }

    /// Without -F: start this same program again with -F in a new session (no fork() in a
    /// Swift process), wait until it listens, then write its pid to the pid file and return.
    /// The child keeps our stdout/stderr (as the reference's daemon does), stdin is /dev/null.
    private func detach() throws {
        let executable = try SpawnedProcess.currentExecutablePath()
        let (readEnd, writeEnd) = try SpawnedProcess.makePipe()
        let arguments = Array(CommandLine.arguments.dropFirst()) + ["-F", "--ready-fd", "3"]
        let child: SpawnedProcess
        do {
            child = try SpawnedProcess.spawn(
                executable: executable, arguments: arguments,
                standardInput: .null, newSession: true,
                extraDescriptors: [(parent: writeEnd, child: 3)])
        } catch {
            readEnd.closeQuietly()
            writeEnd.closeQuietly()
            writeStderr("ivshmem2 server: cannot start the background server: \(error)\n")
            throw ExitCode(1)
        }
        writeEnd.closeQuietly()
        let answer = (try? readEnd.readAll()) ?? []
        readEnd.closeQuietly()
        guard String(decoding: answer, as: UTF8.self).hasPrefix("ok") else {
            // The child printed why; pass its status on.
            let status = try child.wait()
            switch status {
            case .exited(let code): throw ExitCode(code == 0 ? 1 : code)
            case .signaled: throw ExitCode(1)
            }
        }
        do {
            try FileSystem.writeFile(pidFile, bytes: Array("\(child.pid)\n".utf8), mode: 0o644)
        } catch {
            writeStderr("ivshmem2 server: cannot write pid file: \(error)\n")
            try? child.signal(SIGTERM)
            throw ExitCode(1)
        }
    }
}
