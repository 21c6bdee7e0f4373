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
    private var buffer: [UInt8] = []

    public init(name: String, executable: String, arguments: [String], environment: [String]? = nil,
                standardError: SpawnedProcess.Stream = .pipe) throws {
        self.name = name
        process = try SpawnedProcess.spawn(executable: executable, arguments: arguments, environment: environment,
                                           standardInput: .pipe, standardOutput: .pipe, standardError: standardError)
    }

    public func send(_ line: String) throws { try process.standardInput?.writeAll(line + "\n") }

    private func takeLine() -> String? {
        guard let nl = buffer.firstIndex(of: 10) else { return nil }
        let line = String(decoding: buffer[..<nl], as: UTF8.self)
        buffer.removeSubrange(...nl)
        lines.append(line)
        onLine?(line)
        return line
    }

    /// Reads once, waiting at most `timeout`; false at end of file.
    private func fill(timeout: Double) throws -> Bool {
        guard let out = process.standardOutput else { return false }
        guard try out.waitReadable(timeoutMilliseconds: Int32(max(0, min(timeout, 1)) * 1000)) else { return true }
        var chunk = [UInt8](repeating: 0, count: 4096)
        let n = try chunk.withUnsafeMutableBytes { try out.read(into: $0) }
        if n == 0 { return false }
        buffer += chunk[..<n]
        return true
    }

    /// The first line starting with `prefix` within `timeout` seconds (lines before it are
    /// consumed). Throws `LineProcessError` on timeout or when the child closed its stdout.
    @discardableResult
    public func expect(_ prefix: String, timeout: Double = 10) throws -> String {
        let deadline = Monotonic.now() + timeout
        while true {
            while let line = takeLine() { if line.hasPrefix(prefix) { return line } }
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
            while takeLine() != nil {}
        }
        while takeLine() != nil {}
    }

    /// Whatever the child wrote to a stderr pipe so far (without blocking).
    public func drainStandardError() -> String {
        guard let e = process.standardError, (try? e.setNonBlocking(true)) != nil else { return "" }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while let n = try? chunk.withUnsafeMutableBytes({ try e.read(into: $0) }), n > 0 { out += chunk[..<n] }
        return String(decoding: out, as: UTF8.self)
    }

    /// Closes stdin (or sends `signal`), waits up to `timeout` seconds, kills if needed.
    @discardableResult
    public func finish(signal: Int32? = nil, timeout: Double = 10) throws -> ExitStatus {
        if let signal { try? process.signal(signal) } else { process.standardInput?.closeQuietly() }
        let status = try process.waitWithTimeout(seconds: timeout) ?? {
            try? process.signal(SIGKILL)
            return try process.wait()
        }()
        process.closePipes()
        return status
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
