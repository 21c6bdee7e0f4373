#if canImport(Glibc)
import Glibc
#endif

/// A POSIX error number, as a type: named values for the ones callers act on, and the C
/// library's text as its description.
///
/// Callers compare against the named statics (`error.errno == .wouldBlock`) instead of
/// reading the global `errno`, which only ``SystemCallError`` creation touches.
public struct Errno: Error, Hashable, Sendable, CustomStringConvertible {
    /// The C value (`EINTR`, `EAGAIN`, …).
    public let rawValue: Int32

    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// The calling thread's current `errno`. Only the syscall helper should read it.
    static var current: Errno { Errno(rawValue: errno) }

    /// `EINTR`: a signal interrupted the call.
    public static let interrupted = Errno(rawValue: EINTR)
    /// `EAGAIN`/`EWOULDBLOCK`: a non-blocking call found nothing to do.
    public static let wouldBlock = Errno(rawValue: EAGAIN)
    /// `ENOENT`: no such file or directory.
    public static let noEntry = Errno(rawValue: ENOENT)
    /// `ECONNREFUSED`: nothing listens on that socket.
    public static let connectionRefused = Errno(rawValue: ECONNREFUSED)
    /// `EADDRINUSE`: the socket address is taken.
    public static let addressInUse = Errno(rawValue: EADDRINUSE)
    /// `EPIPE`: the other end of a pipe or stream socket is closed.
    public static let brokenPipe = Errno(rawValue: EPIPE)
    /// `ECONNRESET`: the peer reset the connection.
    public static let connectionReset = Errno(rawValue: ECONNRESET)
    /// `EBADF`: not an open file descriptor.
    public static let badFileDescriptor = Errno(rawValue: EBADF)
    /// `EMFILE`: the process has reached RLIMIT_NOFILE.
    public static let tooManyOpenFiles = Errno(rawValue: EMFILE)
    /// `ENFILE`: the system-wide file table is full.
    public static let tooManyOpenFilesInSystem = Errno(rawValue: ENFILE)
    /// `ETOOMANYREFS`: too many file descriptors are in flight in UNIX sockets for this user.
    public static let tooManyReferences = Errno(rawValue: ETOOMANYREFS)
    /// `EINVAL`: an argument is invalid.
    public static let invalidArgument = Errno(rawValue: EINVAL)
    /// `EEXIST`: the file exists.
    public static let fileExists = Errno(rawValue: EEXIST)
    /// `ESRCH`: no such process.
    public static let noSuchProcess = Errno(rawValue: ESRCH)
    /// `ECHILD`: no child process to wait for.
    public static let noChildProcess = Errno(rawValue: ECHILD)
    /// `ENAMETOOLONG`: a path is too long.
    public static let nameTooLong = Errno(rawValue: ENAMETOOLONG)
    /// `EACCES`: permission denied.
    public static let permissionDenied = Errno(rawValue: EACCES)
    /// `ELOOP`: a symbolic link where `O_NOFOLLOW` forbids one (or a loop of links).
    public static let tooManySymbolicLinks = Errno(rawValue: ELOOP)
    /// `EPERM`: the operation is not permitted (e.g. on a sealed memfd).
    public static let notPermitted = Errno(rawValue: EPERM)
    /// `ENOTSOCK`: not a socket.
    public static let notASocket = Errno(rawValue: ENOTSOCK)

    /// The C library's message, e.g. "Connection refused".
    public var description: String {
        guard let text = strerror(rawValue) else { return "error \(rawValue)" }
        return String(cString: text)
    }
}
