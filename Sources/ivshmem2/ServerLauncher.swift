import ArgumentParser
import IvshmemPosix
import IvshmemServer
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Starting a server, shared by `ivshmem2 server` (v2) and `ivshmem2 server-v1`: in the
/// foreground with logging and the termination signals, or detached with a pid file, as the
/// reference servers do (SRV-SIG-1, V1-SRV-CFG-1).
struct ServerLauncher {
    /// The command's name for error messages.
    var name: String
    /// The least severe log record shown (-v, --log-level, -q).
    var level: Logger.Level
    var foreground: Bool
    var pidFile: String
    /// Set by the detaching parent: the child writes "ok" here once it listens.
    var readyFD: Int32?
    /// Where a detached server's log goes (nil: nowhere).
    var logFile: String?

    func launch(_ config: ServerConfiguration) throws {
        // A parent (a test runner's thread) may have left signals blocked.
        try Signals.unblockAll()
        if !foreground {
            try detach()
            return
        }
        // Detached (started by detach(), which passes --ready-fd): from the start, the log goes
        // to --log-file or nowhere, never to the terminal that started us; only a start-up
        // failure is also told there (the parent is waiting for it).
        var terminal: FileDescriptor?
        if readyFD != nil {
            terminal = try? FileDescriptor.standardError.duplicate()
            do { try redirectOutput(to: logFile ?? "/dev/null") } catch {
                writeStderr("\(name): cannot open the log file \(logFile ?? "/dev/null"): \(error)\n")
                throw ExitCode(1)
            }
        }
        defer { terminal?.closeQuietly() }
        let level = self.level
        LoggingSystem.bootstrap { label in StderrLogHandler(label: label, logLevel: level) }
        var logger = Logger(label: config.dialect == .v1 ? "ivshmem2.server-v1" : "ivshmem2.server")
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
            writeStderr("\(name): cannot start: \(error)\n")
            try? terminal?.writeAll("\(name): cannot start: \(error)\n")
            throw ExitCode(1)
        }
        try server.installTerminationSignalHandler()
        if let readyFD {
            let fd = FileDescriptor(rawValue: readyFD)
            try? fd.writeAll("ok\n")
            fd.closeQuietly()
            terminal?.closeQuietly()
            terminal = nil
        }
        do {
            try server.run()
        } catch {
            writeStderr("\(name): event loop failed: \(error)\n")
            throw ExitCode(1)
        }
    }

    /// Points stdout and stderr at `path` (appending).
    private func redirectOutput(to path: String) throws {
        let log = try FileDescriptor.open(path, flags: O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, mode: 0o600)
        defer { log.closeQuietly() }
        try log.duplicate(onto: .standardOutput)
        try log.duplicate(onto: .standardError)
    }

    /// Without -F: start this same program again with -F in a new session (no fork() in a
    /// Swift process), wait until it listens, then write its pid to the pid file and return.
    /// The child reports start-up errors on our stderr; its log goes to --log-file (or
    /// nowhere), never to our terminal. Its stdin is /dev/null.
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
            writeStderr("\(name): cannot start the background server: \(error)\n")
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
            writeStderr("\(name): cannot write pid file: \(error)\n")
            try? child.signal(SIGTERM)
            throw ExitCode(1)
        }
    }
}
