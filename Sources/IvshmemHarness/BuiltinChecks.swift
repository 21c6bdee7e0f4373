import IvshmemServer

/// What a built-in check gets: the profile it runs under and the case's server.
public struct CheckContext: Sendable {
    public var profile: String
    /// The socket of the case's server (embedded or external).
    public var socketPath: String
    /// The case's server settings (from the script's `server` line).
    public var server: ServerConfiguration
    public var trace: TraceRecorder
}

/// A conformance check written in Swift, for what a register-level script cannot express
/// (a hostile server, option validation, signals, file modes). Scripts run it with
/// `check NAME`; the case's `covers` line names the requirements, as for any case.
public struct BuiltinCheck: Sendable {
    public var name: String
    public var summary: String
    public var run: @Sendable (CheckContext) throws -> Void
    /// The check compares this process's open descriptor count before and after (a leak
    /// check): a case running it must have the process to itself (see ``CaseRun/exclusive``).
    public var countsProcessDescriptors = false

    public init(name: String, summary: String, run: @escaping @Sendable (CheckContext) throws -> Void) {
        self.name = name
        self.summary = summary
        self.run = run
    }
}

/// A built-in check's failure: what was expected and what happened.
public struct CheckFailure: Error, Sendable, CustomStringConvertible {
    public var expected: String
    public var actual: String
    public init(expected: String, actual: String) {
        self.expected = expected
        self.actual = actual
    }
    public var description: String { "expected \(expected), got \(actual)" }
}

public enum BuiltinChecks {
    /// Every check by name; each group lives in its own file.
    public static let all: [String: BuiltinCheck] = {
        var out: [String: BuiltinCheck] = [:]
        for c in groups.flatMap({ $0 }) {
            precondition(out[c.name] == nil, "built-in check '\(c.name)' is defined twice")
            out[c.name] = c
        }
        return out
    }()
}
