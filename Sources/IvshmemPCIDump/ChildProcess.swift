import CPCIShim

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A failed pipe or spawn.
public struct ChildProcessError: Error, CustomStringConvertible {
    public var function: String
    public var errno: Int32
    public var description: String { "\(function): \(String(cString: strerror(errno)))" }
}

/// What a child process printed and how it ended.
public struct SpawnResult: Sendable {
    /// The exit status, or 128 + the signal number when a signal ended it.
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

/// Runs a program with posix_spawn (not Foundation.Process: from a test thread it hands the
/// child a blocked signal mask and costs ~50 ms a wait), capturing stdout and stderr. Used to
/// run `lspci -F` on dumps.
public enum ChildProcess {
    /// The first executable `name` on PATH or in the sbin directories lspci lives in on some
    /// distributions (a test runner's PATH often lacks them).
    public static func find(_ name: String) -> String? {
        let path = getenv("PATH").map { String(cString: $0) } ?? ""
        let dirs = path.split(separator: ":").map(String.init) + ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin", "/usr/local/sbin"]
        return dirs.map { "\($0)/\(name)" }.first { access($0, X_OK) == 0 }
    }

    /// Runs `executable` with `arguments`, stdin from /dev/null, default signal mask, and
    /// waits for it.
    public static func run(_ executable: String, _ arguments: [String]) throws -> SpawnResult {
        var outPipe: [Int32] = [-1, -1], errPipe: [Int32] = [-1, -1]
        guard ivs_pci_pipe_cloexec(&outPipe) == 0 else { throw ChildProcessError(function: "pipe2", errno: errno) }
        guard ivs_pci_pipe_cloexec(&errPipe) == 0 else {
            let e = errno
            close(outPipe[0]); close(outPipe[1])
            throw ChildProcessError(function: "pipe2", errno: e)
        }
        var readEnds = [outPipe[0], errPipe[0]]
        defer { for fd in readEnds where fd >= 0 { close(fd) } }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attr, &noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, &attr, argv, environ)
        close(outPipe[1]); close(errPipe[1])
        guard rc == 0 else { throw ChildProcessError(function: "posix_spawn \(executable)", errno: rc) }

        // Drain both pipes together so neither can fill up and stall the child.
        var buffers: [[UInt8]] = [[], []]
        var chunk = [UInt8](repeating: 0, count: 4096)
        while readEnds.contains(where: { $0 >= 0 }) {
            var fds = readEnds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            if poll(&fds, nfds_t(fds.count), -1) < 0 {
                if errno == EINTR { continue }
                break
            }
            for k in 0..<2 where readEnds[k] >= 0 && fds[k].revents != 0 {
                let n = chunk.withUnsafeMutableBytes { read(readEnds[k], $0.baseAddress, $0.count) }
                if n > 0 { buffers[k] += chunk[0..<n] }
                else if n == 0 || errno != EINTR { close(readEnds[k]); readEnds[k] = -1 }
            }
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        // WIFEXITED / WEXITSTATUS are macros: decode the wait status by hand.
        let exit = status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        return SpawnResult(status: exit, stdout: String(decoding: buffers[0], as: UTF8.self),
                           stderr: String(decoding: buffers[1], as: UTF8.self))
    }
}

