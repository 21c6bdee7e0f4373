#if canImport(Glibc)
import Glibc
#endif
import CIvshmemShim

/// Process-wide signal set-up for a server: these change process state, so only a program's
/// entry point (the CLI), never an embedded library user, should call them.
public enum Signals {
    /// Clears the signal mask a parent may have left blocked (a test runner's thread passes
    /// its mask to children, with SIGTERM blocked).
    public static func unblockAll() throws {
        _ = try retryingSystemCall("sigprocmask(SIG_SETMASK, {})") { ivs_unblock_all_signals() }
    }

    /// Ignores SIGPIPE, so that writing to a closed socket is an EPIPE error, not death.
    public static func ignoreBrokenPipe() throws {
        _ = try retryingSystemCall("sigaction(SIGPIPE, SIG_IGN)") { ivs_ignore_sigpipe() }
    }

    /// Installs a handler for SIGTERM, SIGINT and SIGHUP that sets a flag and signals `wake`,
    /// so that an event loop waiting on `wake` returns and shuts down in order.
    public static func installTerminationHandler(wake: EventFD) throws {
        _ = try retryingSystemCall("sigaction(SIGTERM/SIGINT/SIGHUP)") { ivs_install_termination_handler(wake.fd.rawValue) }
    }

    /// Makes the termination handler stop writing to `wake` if that is the fd it was given;
    /// call before closing that fd, whose number the kernel may hand out again. A different fd
    /// (another server's) is left alone.
    public static func forgetTerminationWake(_ wake: EventFD) { ivs_forget_termination_wake_fd(wake.fd.rawValue) }

    /// Runs `body` with a fresh wake eventfd that a termination signal signals; the handler
    /// stops writing to it and it is closed when `body` returns.
    public static func whileWatchingTermination<T>(_ body: (EventFD) throws -> T) throws -> T {
        let wake = try EventFD.create()
        defer { wake.close() }
        try installTerminationHandler(wake: wake)
        defer { forgetTerminationWake(wake) }
        return try body(wake)
    }

    /// Whether a termination signal arrived since ``installTerminationHandler(wake:)``.
    public static var terminationRequested: Bool { ivs_termination_requested() != 0 }

    /// Restores the default disposition of SIGTERM, SIGINT, SIGHUP and SIGPIPE.
    public static func restoreDefaults() throws {
        _ = try retryingSystemCall("sigaction(SIG_DFL)") { ivs_restore_default_signals() }
    }
}
