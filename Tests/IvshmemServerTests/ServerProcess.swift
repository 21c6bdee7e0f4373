import IvshmemPosix
import IvshmemTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The result of running `ivshmem2` to completion.
struct CommandResult {
    var status: ExitStatus
    var standardOutput: String
    var standardError: String
}

/// `ivshmem2 server` started as a real child process, its stderr going to a log file.
final class ServerProcess {
    let process: SpawnedProcess
    let socketPath: String
    let logPath: String
    private var stopped = false

    /// Starts `ivshmem2 server ARGS` and waits for its "listening" log line.
    /// - Parameter launcher: a program that execs the server in its own process (keeping the
    ///   pid), e.g. `["/usr/bin/prlimit", "--nofile=64:64"]`.
    /// - Parameter subcommand: `server`, or `server-v1` for the v1 server.
    init(arguments: [String], socketPath: String, scratch: ScratchDirectory, waitUntilListening: Bool = true, launcher: [String] = [], subcommand: String = "server") throws {
        self.socketPath = socketPath
        logPath = scratch.file("server-\(Int(Monotonic.now() * 1000) % 1_000_000).log")
        let log = try FileDescriptor.open(logPath, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
        defer { log.closeQuietly() }
        let server = [try BuiltProducts.ivshmem2(), subcommand] + arguments
        let command = launcher + server
        process = try SpawnedProcess.spawn(
            executable: command[0], arguments: Array(command.dropFirst()),
            standardInput: .null, standardOutput: .descriptor(log), standardError: .descriptor(log))
        if waitUntilListening { try self.waitUntilListening() }
    }

    struct StartFailed: Error, CustomStringConvertible {
        var description: String
    }

    func waitUntilListening(timeout: Double = 10) throws {
        let listening = try Monotonic.poll(timeout: timeout, interval: 0.01) {
            if log.contains("listening") { return true }
            if let status = try process.waitWithTimeout(seconds: 0) {
                stopped = true
                throw StartFailed(description: "server exited (\(status)) before listening: \(log)")
            }
            return false
        }
        if !listening { throw StartFailed(description: "server did not listen within \(timeout) s: \(log)") }
    }

    var log: String {
        (try? FileSystem.readFile(logPath)).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }

    var isRunning: Bool {
        !stopped && (try? process.waitWithTimeout(seconds: 0)) == nil
    }

    /// SIGTERM and wait for the exit status (SIGKILL after `timeout`).
    @discardableResult
    func terminate(timeout: Double = 10) throws -> ExitStatus {
        guard !stopped else { return .exited(-1) }
        stopped = true
        try? process.signal(SIGTERM)
        if let status = try process.waitWithTimeout(seconds: timeout) { return status }
        try? process.signal(SIGKILL)
        return try process.wait()
    }

    deinit {
        if !stopped {
            try? process.signal(SIGKILL)
            _ = try? process.wait()
        }
    }

    /// Runs `ivshmem2 ARGS` to completion and collects its output.
    static func run(_ arguments: [String], timeout: Double = 20) throws -> CommandResult {
        try run(executable: try BuiltProducts.ivshmem2(), arguments, timeout: timeout)
    }

    /// Runs `executable ARGS` to completion and collects its output.
    static func run(executable: String, _ arguments: [String], timeout: Double = 20) throws -> CommandResult {
        let child = try SpawnedProcess.spawn(
            executable: executable, arguments: arguments,
            standardInput: .null, standardOutput: .pipe, standardError: .pipe)
        defer { child.closePipes() }
        // The outputs are small (usage text at most): read them to the end, then reap.
        let out = (try? child.standardOutput?.readAll()) ?? []
        let err = (try? child.standardError?.readAll()) ?? []
        let status: ExitStatus
        if let s = try child.waitWithTimeout(seconds: timeout) { status = s } else {
            try? child.signal(SIGKILL)
            status = try child.wait()
        }
        return CommandResult(status: status, standardOutput: String(decoding: out, as: UTF8.self), standardError: String(decoding: err, as: UTF8.self))
    }
}

/// Resource figures of another process, from /proc: what the hostile-peer and churn tests
/// compare before and after.
struct ProcessResources: Equatable, CustomStringConvertible {
    /// Open descriptors (entries of /proc/PID/fd).
    var descriptors: Int
    /// Resident set size in KiB (VmRSS of /proc/PID/status).
    var residentKiB: Int

    static func of(_ pid: pid_t) -> ProcessResources {
        let descriptors = ((try? FileSystem.listDirectory("/proc/\(pid)/fd")) ?? []).count
        let status = (try? FileSystem.readFile("/proc/\(pid)/status")).map { String(decoding: $0, as: UTF8.self) } ?? ""
        let rss = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }
            .flatMap { line in line.split(whereSeparator: \.isWhitespace).dropFirst().first.flatMap { Int($0) } } ?? -1
        return ProcessResources(descriptors: descriptors, residentKiB: rss)
    }

    var description: String { "\(descriptors) fds, VmRSS \(residentKiB) KiB" }
}

extension ServerProcess {
    /// The server's descriptors and memory now.
    var resources: ProcessResources { ProcessResources.of(process.pid) }

    /// Waits (up to `timeout` s) until the server holds at most `baseline` descriptors again —
    /// it frees a departed peer's after handling the hang-up — and returns the last count.
    /// (Fewer is fine: a baseline taken while earlier messages were in flight can be high.)
    func descriptorsSettle(to baseline: Int, timeout: Double = 10) -> Int {
        _ = Monotonic.poll(timeout: timeout, interval: 0.01) { resources.descriptors <= baseline }
        return resources.descriptors
    }

    /// Waits (up to `timeout` s) until the log contains `text`.
    func logSettles(containing text: String, timeout: Double = 10) -> Bool {
        Monotonic.poll(timeout: timeout, interval: 0.01) { log.contains(text) }
    }
}
