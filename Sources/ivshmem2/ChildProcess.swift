#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import IvshmemPosix

/// A child `ivshmem2` process whose stdin we write and whose stdout we follow line by line,
/// waiting for expected records with a timeout. Used by `demo`.
final class ChildProcess {
    let name: String
    let process: SpawnedProcess
    private var buffer: [UInt8] = []
    private let echo: (String, String) -> Void

    init(name: String, arguments: [String], echo: @escaping (String, String) -> Void) throws {
        self.name = name
        self.echo = echo
        process = try SpawnedProcess.spawn(
            executable: try SpawnedProcess.currentExecutablePath(), arguments: arguments,
            standardInput: .pipe, standardOutput: .pipe, standardError: .pipe)
    }

    func send(_ line: String) throws {
        echo(name, "> " + line)
        try process.standardInput?.writeAll(line + "\n")
    }

    /// Reads lines until one starts with `prefix`; throws with the child's stderr on timeout
    /// or exit.
    @discardableResult
    func expect(_ prefix: String, timeout: Double = 10) throws -> String {
        let deadline = Monotonic.now() + timeout
        while true {
            while let nl = buffer.firstIndex(of: 10) {
                let line = String(decoding: buffer[..<nl], as: UTF8.self)
                buffer.removeSubrange(...nl)
                echo(name, line)
                if line.hasPrefix(prefix) { return line }
            }
            let left = deadline - Monotonic.now()
            guard left > 0, let out = process.standardOutput else { throw failure("timed out after \(timeout) s waiting for '\(prefix)'") }
            if try out.waitReadable(timeoutMilliseconds: Int32(min(left, 1) * 1000)) {
                var chunk = [UInt8](repeating: 0, count: 4096)
                let n = try chunk.withUnsafeMutableBytes { try out.read(into: $0) }
                if n == 0 { throw failure("exited before printing '\(prefix)'") }
                buffer += chunk[..<n]
            }
        }
    }

    /// Echoes every complete line that arrives within `seconds`.
    func drain(seconds: Double) {
        guard let out = process.standardOutput else { return }
        while (try? out.waitReadable(timeoutMilliseconds: Int32(seconds * 1000))) == true {
            var chunk = [UInt8](repeating: 0, count: 4096)
            guard let n = try? chunk.withUnsafeMutableBytes({ try out.read(into: $0) }), n > 0 else { break }
            buffer += chunk[..<n]
        }
        while let nl = buffer.firstIndex(of: 10) {
            echo(name, String(decoding: buffer[..<nl], as: UTF8.self))
            buffer.removeSubrange(...nl)
        }
    }

    func failure(_ what: String) -> ValidationError {
        var err = ""
        if let e = process.standardError, (try? e.setNonBlocking(true)) != nil,
            let bytes = try? e.readAllAvailable() { err = String(decoding: bytes, as: UTF8.self) }
        return ValidationError("\(name) \(what)" + (err.isEmpty ? "" : "; its stderr:\n" + err))
    }

    func finish(timeout: Double = 10) throws -> ExitStatus {
        process.standardInput?.closeQuietly()
        if let s = try process.waitWithTimeout(seconds: timeout) { process.closePipes(); return s }
        try? process.signal(SIGKILL)
        let s = try process.wait()
        process.closePipes()
        return s
    }
}

extension FileDescriptor {
    /// Whatever can be read now without blocking (the descriptor must be non-blocking).
    func readAllAvailable() throws -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n: Int
            do { n = try chunk.withUnsafeMutableBytes { try read(into: $0) } } catch let e as SystemCallError where e.errno == .wouldBlock { break }
            if n == 0 { break }
            out += chunk[..<n]
        }
        return out
    }
}
