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
