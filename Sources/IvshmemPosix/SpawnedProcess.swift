#if canImport(Glibc)
import Glibc
#endif
import CIvshmemShim

/// How a process ended.
public enum ExitStatus: Equatable, Sendable, CustomStringConvertible {
    /// `exit(code)`.
    case exited(Int32)
    /// Killed by a signal.
    case signaled(Int32)

    /// Exited with status 0.
    public var isSuccess: Bool { self == .exited(0) }

    public var description: String {
        switch self {
        case .exited(let code): return "exit status \(code)"
        case .signaled(let signal): return "killed by signal \(signal)"
        }
    }

    init(waitStatus status: Int32) {
        let signal = status & 0x7f
        if signal == 0 {
            self = .exited((status >> 8) & 0xff)
        } else {
            self = .signaled(signal)
        }
    }
}

/// A child process started with `posix_spawn` (not `Foundation.Process`: started from a test
/// runner's thread, its children inherit a blocked signal mask and ignore SIGTERM).
///
/// The child starts with an empty signal mask and the default disposition of SIGTERM,
/// SIGINT, SIGHUP and SIGPIPE, and with every descriptor above the standard three (and the
/// ones passed in `extraDescriptors`) closed.
public struct SpawnedProcess: Sendable {
    /// What a child's standard stream is connected to.
    public enum Stream: Sendable {
        /// The parent's own.
        case inherit
        /// `/dev/null`.
        case null
        /// A new pipe; the parent's end is in ``standardInput`` / ``standardOutput`` /
        /// ``standardError``.
        case pipe
        /// A descriptor of the parent's (it stays open in the parent).
        case descriptor(FileDescriptor)
    }

    /// The child's process id.
    public let pid: pid_t
    /// The parent's (write) end of the child's stdin, when it was `.pipe`.
    public let standardInput: FileDescriptor?
    /// The parent's (read) end of the child's stdout, when it was `.pipe`.
    public let standardOutput: FileDescriptor?
    /// The parent's (read) end of the child's stderr, when it was `.pipe`.
    public let standardError: FileDescriptor?

    /// Starts `executable` (a path, not searched in PATH) with `arguments` (not including
    /// argv[0], which is the executable path).
    /// - Parameters:
    ///   - environment: the child's environment; nil passes the parent's.
    ///   - newSession: `setsid()` in the child (detach from the terminal, as a daemon does).
    ///   - extraDescriptors: parent descriptors to give the child at the given numbers (≥ 3).
    public static func spawn(
        executable: String,
        arguments: [String],
        environment: [String]? = nil,
        standardInput stdinMode: Stream = .inherit,
        standardOutput stdoutMode: Stream = .inherit,
        standardError stderrMode: Stream = .inherit,
        newSession: Bool = false,
        extraDescriptors: [(parent: FileDescriptor, child: CInt)] = []
    ) throws -> SpawnedProcess {
        var actions = posix_spawn_file_actions_t()
        try returnCodeCall("posix_spawn_file_actions_init") { posix_spawn_file_actions_init(&actions) }
        defer { posix_spawn_file_actions_destroy(&actions) }
        var attributes = posix_spawnattr_t()
        try returnCodeCall("posix_spawnattr_init") { posix_spawnattr_init(&attributes) }
        defer { posix_spawnattr_destroy(&attributes) }

        // Parent-side pipe ends to return, and child-side ends to close after the spawn.
        var parentEnds: [FileDescriptor?] = [nil, nil, nil]
        var childEnds: [FileDescriptor] = []
        var closeOnFailure: [FileDescriptor] = []
        var succeeded = false
        defer {
            for fd in childEnds { fd.closeQuietly() }
            if !succeeded { for fd in closeOnFailure { fd.closeQuietly() } }
        }

        for (target, mode) in [(CInt(0), stdinMode), (1, stdoutMode), (2, stderrMode)] {
            switch mode {
            case .inherit:
                break
            case .null:
                try returnCodeCall("posix_spawn_file_actions_addopen", detail: "/dev/null") {
                    posix_spawn_file_actions_addopen(&actions, target, "/dev/null", target == 0 ? O_RDONLY : O_WRONLY, 0)
                }
            case .pipe:
                let (readEnd, writeEnd) = try makePipe()
                let (childEnd, parentEnd) = target == 0 ? (readEnd, writeEnd) : (writeEnd, readEnd)
                childEnds.append(childEnd)
                closeOnFailure.append(parentEnd)
                parentEnds[Int(target)] = parentEnd
                try returnCodeCall("posix_spawn_file_actions_adddup2") {
                    posix_spawn_file_actions_adddup2(&actions, childEnd.rawValue, target)
                }
            case .descriptor(let fd):
                try returnCodeCall("posix_spawn_file_actions_adddup2") {
                    posix_spawn_file_actions_adddup2(&actions, fd.rawValue, target)
                }
            }
        }
        var highestKept: CInt = 2
        for (parent, child) in extraDescriptors {
            try returnCodeCall("posix_spawn_file_actions_adddup2") {
                posix_spawn_file_actions_adddup2(&actions, parent.rawValue, child)
            }
            highestKept = max(highestKept, child)
        }
        // After the dup2s (actions run in order): close everything else the parent had open.
        try returnCodeCall("posix_spawn_file_actions_addclosefrom_np") {
            ivs_spawn_file_actions_addclosefrom(&actions, highestKept + 1)
        }

        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        try returnCodeCall("posix_spawnattr_setsigmask") { posix_spawnattr_setsigmask(&attributes, &noSignals) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE] { sigaddset(&defaults, signal) }
        try returnCodeCall("posix_spawnattr_setsigdefault") { posix_spawnattr_setsigdefault(&attributes, &defaults) }
        var flags = Int32(POSIX_SPAWN_SETSIGMASK) | Int32(POSIX_SPAWN_SETSIGDEF)
        if newSession { flags |= ivs_posix_spawn_setsid_flag() }
        try returnCodeCall("posix_spawnattr_setflags") { posix_spawnattr_setflags(&attributes, Int16(flags)) }

        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        let envp: [UnsafeMutablePointer<CChar>?]? = environment.map { $0.map { strdup($0) } + [nil] }
        defer { envp?.forEach { free($0) } }

        var pid: pid_t = 0
        try returnCodeCall("posix_spawn", detail: executable) {
            if var envp {
                return envp.withUnsafeMutableBufferPointer { env in
                    posix_spawn(&pid, executable, &actions, &attributes, argv, env.baseAddress)
                }
            }
            return posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        }
        succeeded = true
        return SpawnedProcess(pid: pid, standardInput: parentEnds[0], standardOutput: parentEnds[1], standardError: parentEnds[2])
    }

    /// Sends `signal` (e.g. `SIGTERM`) to the child.
    public func signal(_ signal: Int32) throws {
        _ = try retryingSystemCall("kill", detail: "pid \(pid), signal \(signal)") { kill(pid, signal) }
    }

    /// Waits for the child to end and reaps it.
    public func wait() throws -> ExitStatus {
        var status: Int32 = 0
        _ = try retryingSystemCall("waitpid", detail: "pid \(pid)") { waitpid(pid, &status, 0) }
        return ExitStatus(waitStatus: status)
    }

    /// Waits at most `seconds` for the child to end; nil if it is still running.
    public func waitWithTimeout(seconds: Double) throws -> ExitStatus? {
        let deadline = Monotonic.now() + seconds
        var pause = 0.001
        while true {
            var status: Int32 = 0
            let result = try retryingSystemCall("waitpid", detail: "pid \(pid)") { waitpid(pid, &status, WNOHANG) }
            if result == pid { return ExitStatus(waitStatus: status) }
            let left = deadline - Monotonic.now()
            if left <= 0 { return nil }
            Monotonic.sleep(seconds: min(pause, left))
            pause = min(pause * 2, 0.02)
        }
    }

    /// Closes the parent's pipe ends (when the caller is done with them).
    public func closePipes() {
        standardInput?.closeQuietly()
        standardOutput?.closeQuietly()
        standardError?.closeQuietly()
    }

    /// The path of the running executable (`/proc/self/exe`).
    public static func currentExecutablePath() throws -> String {
        var buffer = [CChar](repeating: 0, count: 4097)
        let n = try retryingSystemCall("readlink", detail: "/proc/self/exe") {
            buffer.withUnsafeMutableBufferPointer { b in b.baseAddress.map { readlink("/proc/self/exe", $0, 4096) } ?? -1 }
        }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The executable `name` of the same build as this process: this process itself when it
    /// is `name`, else the regular file `name` in the folder of this executable (or of the
    /// bundle it is in). A test bundle or a tool finds the `ivshmem2` of its own build this
    /// way, so a sanitizer build spawns its own instrumented one. nil when there is none.
    public static func siblingExecutable(named name: String) -> String? {
        guard let own = try? currentExecutablePath() else { return nil }
        var parts = own.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if parts.last == name { return own }
        parts.removeLast()
        // Inside a bundle (…/X.xctest/Contents/MacOS/X): its folder is the build folder.
        while let last = parts.last, last == "MacOS" || last == "Contents" || last.hasSuffix(".xctest") { parts.removeLast() }
        let candidate = (parts + [name]).joined(separator: "/")
        return (try? FileSystem.status(ofPath: candidate))??.isRegularFile == true ? candidate : nil
    }

    /// This process's id.
    public static var currentProcessID: pid_t { getpid() }

    /// Whether a process with this id exists (`kill(pid, 0)`).
    public static func exists(_ pid: pid_t) -> Bool {
        do {
            _ = try retryingSystemCall("kill", detail: "pid \(pid), 0") { kill(pid, 0) }
            return true
        } catch let error as SystemCallError {
            return error.errno != .noSuchProcess
        } catch {
            return false
        }
    }

    /// `pipe2(O_CLOEXEC)`: (read end, write end).
    public static func makePipe() throws -> (FileDescriptor, FileDescriptor) {
        var fds: [Int32] = [-1, -1]
        _ = try retryingSystemCall("pipe2") { ivs_pipe2(&fds, O_CLOEXEC) }
        return (FileDescriptor(rawValue: fds[0]), FileDescriptor(rawValue: fds[1]))
    }
}

/// The monotonic clock, for timeouts.
public enum Monotonic {
    /// Seconds since an arbitrary fixed point.
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// Evaluates `condition` until it holds or `timeout` seconds pass, pausing briefly between
    /// tries; returns whether it held. For state that has no event to wait on (another
    /// thread's bookkeeping): where there is an event, wait for the event instead. An error
    /// `condition` throws ends the wait (e.g. "the process we wait for has exited").
    /// The one polling loop of the project: every wait for a condition goes through it.
    /// With `backingOffTo`, the pause doubles after every try up to that many seconds (for a
    /// condition that usually holds at once but may take long).
    public static func poll(timeout: Double, interval: Double = 0.001, backingOffTo maxInterval: Double? = nil,
                            _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = now() + timeout
        var pause = interval
        while now() < deadline {
            if try condition() { return true }
            sleep(seconds: pause)
            if let maxInterval { pause = min(pause * 2, maxInterval) }
        }
        return try condition()
    }

    /// Sleeps for `seconds` (resumes after signals until the time has passed).
    public static func sleep(seconds: Double) {
        guard seconds > 0 else { return }
        var request = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - Double(Int(seconds))) * 1e9))
        var remaining = timespec()
        while nanosleep(&request, &remaining) == -1 {
            request = remaining
        }
    }
}
