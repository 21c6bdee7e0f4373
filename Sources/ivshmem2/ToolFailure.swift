import ArgumentParser

/// A command that ran and failed (a file it cannot read, a server it cannot reach, a profile the
/// tables do not define): the message on stderr and exit status 1 (or `status`), without the
/// usage text that ArgumentParser prints for a usage error (exit status 64).
struct ToolFailure: Error, CustomStringConvertible {
    var message: String
    var status: Int32 = ExitStatusCode.failure

    init(_ message: String, status: Int32 = ExitStatusCode.failure) {
        self.message = message
        self.status = status
    }

    var description: String { message }
}

/// The tool's exit statuses (also listed in the README and each command's help).
enum ExitStatusCode {
    /// Everything ran and passed.
    static let success: Int32 = 0
    /// A case or check failed, or the command could not do its work.
    static let failure: Int32 = 1
    /// `run`: a script could not be read or parsed (nothing ran).
    static let badInput: Int32 = 65
    /// `run`: every case was skipped (as pytest's "no tests ran").
    static let nothingRan: Int32 = 5
    /// A usage error: unknown option, missing argument, bad option value (ArgumentParser's).
    static let usage: Int32 = 64
}
