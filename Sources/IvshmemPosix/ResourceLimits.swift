#if canImport(Glibc)
import Glibc
#endif

/// `RLIMIT_NOFILE`: how many descriptors the process may hold. A server holds one socket and
/// `vectors` eventfds per peer, so a large `maxPeers` needs more than the usual 1024.
public enum ResourceLimits {
    /// The (soft, hard) limit on open descriptors.
    public static func openFiles() throws -> (soft: UInt64, hard: UInt64) {
        var limit = rlimit()
        _ = try retryingSystemCall("getrlimit(RLIMIT_NOFILE)") { getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) }
        return (UInt64(limit.rlim_cur), UInt64(limit.rlim_max))
    }

    /// Raises the soft limit to the hard limit; returns the new soft limit.
    @discardableResult
    public static func raiseOpenFilesToMaximum() throws -> UInt64 {
        var limit = rlimit()
        _ = try retryingSystemCall("getrlimit(RLIMIT_NOFILE)") { getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = try retryingSystemCall("setrlimit(RLIMIT_NOFILE)", detail: "\(limit.rlim_max)") { setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) }
        }
        return UInt64(limit.rlim_cur)
    }
}

/// The scheduler's view of this process.
public enum Scheduling {
    /// This process's nice value (-20…19; higher means a smaller share of the CPU).
    public static func niceValue() throws -> Int32 {
        errno = 0
        let value = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)
        if value == -1 && errno != 0 { throw SystemCallError(call: "getpriority", errno: Errno(rawValue: errno), detail: nil) }
        return value
    }

    /// Raises this process's nice value by `steps` (at most to 19). Any process may do so; it
    /// gives the other processes of the same user a larger share of the CPU when they compete.
    public static func yieldPriority(by steps: Int32) throws {
        let target = min(19, try niceValue() + steps)
        _ = try retryingSystemCall("setpriority", detail: "nice \(target)") {
            setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, target)
        }
    }
}
