#if canImport(Glibc)
import Glibc
#endif
import CBench
import IvshmemPosix
import IvshmemServer

func writeOut(_ s: String) { _ = try? FileDescriptor.standardOutput.writeAll(s) }
func writeErr(_ s: String) { _ = try? FileDescriptor.standardError.writeAll(s) }

struct BenchOptions {
    var smoke = false
    var outputDirectory = "bench"
    var only: Set<String>? = nil
    func wants(_ part: String) -> Bool { only?.contains(part) ?? true }
}

/// Nanoseconds on the monotonic clock.
@inline(__always) func nowNS() -> UInt64 { cb_now_ns() }

/// Where the two sides of a round trip run.
struct Placement: Sendable, CustomStringConvertible {
    var name: String
    var cpuA: Int32   // -1: unpinned
    var cpuB: Int32
    var description: String {
        cpuA < 0 ? "unpinned" : "A→cpu\(cpuA) B→cpu\(cpuB)"
    }
    /// Both sides pinned to the same CPU.
    var sharesOneCPU: Bool { cpuA >= 0 && cpuA == cpuB }

    static func all(cpus: Int) -> [Placement] {
        var p = [Placement(name: "same-cpu", cpuA: 0, cpuB: 0)]
        if cpus > 1 { p.append(Placement(name: "cross-cpu", cpuA: 0, cpuB: 1)) }
        p.append(Placement(name: "unpinned", cpuA: -1, cpuB: -1))
        return p
    }
}

/// Reads one line from a child's stdout pipe (with a timeout).
func readLine(from fd: FileDescriptor, timeout: Double) -> String? {
    var line: [UInt8] = []
    let deadline = Monotonic.now() + timeout
    while Monotonic.now() < deadline {
        guard (try? fd.waitReadable(timeoutMilliseconds: 100)) == true else { continue }
        var b: UInt8 = 0
        let n = (try? withUnsafeMutableBytes(of: &b) { try fd.read(into: $0) }) ?? 0
        if n == 0 { return nil }
        if b == 10 { return String(decoding: line, as: UTF8.self) }
        line.append(b)
    }
    return nil
}

func machineDescription() -> (cpus: Int, model: String, kernel: String) {
    let cpus = Int(cb_online_cpus())
    var model = "unknown"
    if let text = try? FileSystem.readFile("/proc/cpuinfo") {
        for line in String(decoding: text, as: UTF8.self).split(separator: "\n") where line.hasPrefix("model name") {
            if let colon = line.firstIndex(of: ":") { model = line[line.index(after: colon)...].trimmingCharacters() }
            break
        }
    }
    var u = utsname()
    uname(&u)
    let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    return (cpus, model, release)
}

extension Substring {
    func trimmingCharacters() -> String {
        String(self.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}

func format(_ v: Double, _ digits: Int = 2) -> String {
    if v.isNaN || v.isInfinite { return "—" }
    var s = String(Int((abs(v) * pow(10, Double(digits))).rounded()))
    while s.count <= digits { s = "0" + s }
    let cut = s.index(s.endIndex, offsetBy: -digits)
    let out = digits > 0 ? s[..<cut] + "." + s[cut...] : Substring(s)
    return (v < 0 ? "-" : "") + out
}

/// A server thread for one measurement (2 peers, 1 vector, 1 MiB) on a socket in a fresh
/// directory; `stop()` ends it and removes the directory.
func benchServer() throws -> PrivateServer {
    var config = ServerConfiguration()
    config.maxPeers = 2
    config.vectors = 1
    config.size = 1 << 20
    return try PrivateServer(configuration: config, prefix: "ivshmem2-bench", label: "bench-server", logLevel: .critical)
}
