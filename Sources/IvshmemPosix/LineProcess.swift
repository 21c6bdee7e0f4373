/// A child process whose stdin takes lines and whose stdout is followed line by line, with
/// timeouts: the demo, the simulation coordinator and the process tests all drive children
/// this way.
public final class LineProcess {
    public let name: String
    public let process: SpawnedProcess
    /// Every stdout line read so far, in order.
    public private(set) var lines: [String] = []
    /// Called for each stdout line as it is read (e.g. to echo a transcript).
    public var onLine: ((String) -> Void)?
    private var output = LineBuffer()
    private var errors = LineBuffer()
    /// Stdout lines read but not yet taken by ``expect(_:timeout:)`` or ``nextLine()``.
    private var unread: [String] = []
    private var unreadHead = 0
    private var inputClosed = false
    private var pipesClosed = false

    public init(name: String, executable: String, arguments: [String], environment: [String]? = nil,
                standardError: SpawnedProcess.Stream = .pipe) throws {
        self.name = name
        process = try SpawnedProcess.spawn(executable: executable, arguments: arguments, environment: environment,
                                           standardInput: .pipe, standardOutput: .pipe, standardError: standardError)
    }

    public func send(_ line: String) throws {
        guard !inputClosed else { throw SystemCallError(call: "write", errno: .badFileDescriptor, detail: "\(name)'s stdin is closed") }
        try process.standardInput?.writeAll(line + "\n")
    }

    /// The next stdout line already read and not yet taken, if any.
    public func nextLine() -> String? {
        guard unreadHead < unread.count else { return nil }
        defer {
            unreadHead += 1
            if unreadHead == unread.count { unread.removeAll(keepingCapacity: true); unreadHead = 0 }
        }
        return unread[unreadHead]
    }

    /// Reads once from the child's stdout (call it when the pipe is readable: it blocks
    /// otherwise) and queues the complete lines for ``nextLine()``. False at end of file; an
    /// unterminated last line is queued then.
    public func readOutput() throws -> Bool {
        guard let out = process.standardOutput, !pipesClosed else { return false }
        let more = try output.read(from: out)
        while let line = output.nextLine(atEnd: !more) {
            lines.append(line)
            unread.append(line)
            onLine?(line)
        }
        return more
    }

    /// Reads once from the child's stderr pipe (call it when readable) and returns the complete
    /// lines; `ended` at end of file (with an unterminated last line among `lines`).
    public func readErrorLines() throws -> (lines: [String], ended: Bool) {
        guard let err = process.standardError, !pipesClosed else { return ([], true) }
        let more = try errors.read(from: err)
        var got: [String] = []
        while let line = errors.nextLine(atEnd: !more) { got.append(line) }
        return (got, !more)
    }

    /// Reads once, waiting at most `timeout`; false at end of file.
    private func fill(timeout: Double) throws -> Bool {
        guard let out = process.standardOutput, !pipesClosed else { return false }
        guard try out.waitReadable(timeoutMilliseconds: Int32(max(0, min(timeout, 1)) * 1000)) else { return true }
        return try readOutput()
    }

    /// The first line starting with `prefix` within `timeout` seconds (lines before it are
    /// consumed). Throws `LineProcessError` on timeout or when the child closed its stdout.
    @discardableResult
    public func expect(_ prefix: String, timeout: Double = 10) throws -> String {
        let deadline = Monotonic.now() + timeout
        while true {
            while let line = nextLine() { if line.hasPrefix(prefix) { return line } }
            let left = deadline - Monotonic.now()
            guard left > 0 else { throw LineProcessError(process: name, waitingFor: prefix, reason: "timed out after \(timeout) s", recentLines: Array(lines.suffix(8)), standardError: drainStandardError()) }
            guard try fill(timeout: left) else {
                throw LineProcessError(process: name, waitingFor: prefix, reason: "exited", recentLines: Array(lines.suffix(8)), standardError: drainStandardError())
            }
        }
    }

    /// Reads every line that arrives within `seconds`.
    public func drain(seconds: Double) {
        let deadline = Monotonic.now() + seconds
        while Monotonic.now() < deadline, (try? fill(timeout: deadline - Monotonic.now())) == true {
            while nextLine() != nil {}
        }
        while nextLine() != nil {}
    }

    /// Whatever the child wrote to a stderr pipe so far (without blocking).
    public func drainStandardError() -> String {
        guard let e = process.standardError, !pipesClosed, (try? e.setNonBlocking(true)) != nil else { return "" }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while let n = try? chunk.withUnsafeMutableBytes({ try e.read(into: $0) }), n > 0 { out += chunk[..<n] }
        return String(decoding: out, as: UTF8.self)
    }

    /// Closes stdin (or sends `signal`), waits up to `timeout` seconds, kills if needed.
    @discardableResult
    public func finish(signal: Int32? = nil, timeout: Double = 10) throws -> ExitStatus {
        if let signal { try? process.signal(signal) } else { closeInput() }
        let status = try process.waitWithTimeout(seconds: timeout) ?? {
            try? process.signal(SIGKILL)
            return try process.wait()
        }()
        closePipes()
        return status
    }

    /// Closes the child's stdin (it sees end of file). Idempotent.
    public func closeInput() {
        guard !inputClosed else { return }
        inputClosed = true
        process.standardInput?.closeQuietly()
    }

    /// Closes the parent's ends of every pipe. Idempotent; nothing is read afterwards.
    public func closePipes() {
        closeInput()
        guard !pipesClosed else { return }
        pipesClosed = true
        process.standardOutput?.closeQuietly()
        process.standardError?.closeQuietly()
    }
}

/// Splits a byte stream into lines (without their newlines).
public struct LineBuffer {
    private var bytes: [UInt8] = []
    public init() {}

    /// Reads once from `fd` into the buffer; false at end of file.
    public mutating func read(from fd: FileDescriptor) throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 4096)
        let n = try chunk.withUnsafeMutableBytes { try fd.read(into: $0) }
        bytes += chunk[..<n]
        return n > 0
    }

    /// The next complete line; at the end of the stream also what follows the last newline.
    public mutating func nextLine(atEnd: Bool = false) -> String? {
        if let nl = bytes.firstIndex(of: 10) {
            defer { bytes.removeSubrange(...nl) }
            return String(decoding: bytes[..<nl], as: UTF8.self)
        }
        guard atEnd, !bytes.isEmpty else { return nil }
        defer { bytes.removeAll() }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// A child did not print what was expected.
public struct LineProcessError: Error, CustomStringConvertible {
    public var process: String
    public var waitingFor: String
    public var reason: String
    public var recentLines: [String]
    public var standardError: String
    public var description: String {
        "\(process) \(reason) while waiting for '\(waitingFor)'; last lines: \(recentLines)" + (standardError.isEmpty ? "" : "; stderr:\n" + standardError)
    }
}

#if canImport(Glibc)
import Glibc
#endif
