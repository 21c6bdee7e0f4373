#if canImport(Glibc)
import Glibc
#endif

/// A failed system call: which call, on what (a path, an fd, a size), and the `errno` it set.
///
/// The description reads like `connect(/tmp/x.sock): Connection refused`, so that an error
/// shown to a user names both what failed and where.
public struct SystemCallError: Error, CustomStringConvertible, Sendable {
    /// The call's name, e.g. `connect`.
    public var call: String
    /// The error number the call set.
    public var errno: Errno
    /// What the call was applied to (a path, a name, "fd 7"), when that helps the reader.
    public var detail: String?

    public init(call: String, errno: Errno, detail: String? = nil) {
        self.call = call
        self.errno = errno
        self.detail = detail
    }

    public var description: String {
        if let detail { return "\(call)(\(detail)): \(errno)" }
        return "\(call): \(errno)"
    }
}

/// Runs one system call that reports failure as -1 and the reason in `errno`: retries it while
/// it fails with `EINTR`, and turns any other failure into a ``SystemCallError``.
///
/// This is the only place in the module that reads `errno` after a call returning an integer
/// (see ``checkedPointer(_:_:detail:failure:)`` for calls returning pointers): everything
/// else goes through it, so that EINTR is never forgotten and every error names its call.
@inline(__always)
func retryingSystemCall<Result: BinaryInteger>(
    _ call: @autoclosure () -> String,
    detail: @autoclosure () -> String? = nil,
    _ body: () -> Result
) throws -> Result {
    while true {
        let result = body()
        if result != -1 { return result }
        let error = Errno.current
        if error == .interrupted { continue }
        throw SystemCallError(call: call(), errno: error, detail: detail())
    }
}

/// Runs a call that must not be retried on EINTR (`close`): one attempt, -1 becomes an error.
@inline(__always)
func singleSystemCall<Result: BinaryInteger>(
    _ call: @autoclosure () -> String,
    detail: @autoclosure () -> String? = nil,
    _ body: () -> Result
) throws -> Result {
    let result = body()
    if result != -1 { return result }
    throw SystemCallError(call: call(), errno: Errno.current, detail: detail())
}

/// Runs a call that reports failure by returning a sentinel pointer (`nil`, `MAP_FAILED`)
/// and the reason in `errno`; retries on EINTR.
@inline(__always)
func checkedPointer<P>(
    _ call: @autoclosure () -> String,
    detail: @autoclosure () -> String? = nil,
    failure isFailure: (P) -> Bool,
    _ body: () -> P
) throws -> P {
    while true {
        let result = body()
        if !isFailure(result) { return result }
        let error = Errno.current
        if error == .interrupted { continue }
        throw SystemCallError(call: call(), errno: error, detail: detail())
    }
}

/// Runs a call of the `posix_spawn`/`pthread` family, which returns the error number itself
/// (0 on success) instead of setting `errno`.
@inline(__always)
func returnCodeCall(
    _ call: @autoclosure () -> String,
    detail: @autoclosure () -> String? = nil,
    _ body: () -> Int32
) throws {
    let result = body()
    if result != 0 { throw SystemCallError(call: call(), errno: Errno(rawValue: result), detail: detail()) }
}
