import IvshmemPosix

/// (user, system) clock ticks a process has used, from /proc/PID/stat.
func cpuTicks(of pid: String) -> (Int, Int) {
    guard let bytes = try? FileSystem.readFile("/proc/\(pid)/stat") else { return (-1, -1) }
    let text = String(decoding: bytes, as: UTF8.self)
    let fields = text.split(separator: ")").last?.split(separator: " ") ?? []
    guard fields.count > 13, let user = Int(fields[11]), let system = Int(fields[12]) else { return (-1, -1) }
    return (user, system)
}

/// A minimal client for the scale run: one recvmsg per message, descriptors closed at once.
struct LeanClient {
    let socket: FileDescriptor
    private(set) var count = 0
    private(set) var descriptors = 0
    private(set) var initialID: UInt32?

    struct Failure: Error, CustomStringConvertible { var description: String }

    init(path: String) throws { socket = try UnixSocket.connect(path: path) }

    /// Receives `n` messages (each within 10 s) and returns their first 8 bytes.
    mutating func receive(_ n: Int) throws -> [[UInt8]] {
        var headers: [[UInt8]] = []
        for _ in 0..<n {
            guard try socket.waitReadable(timeoutMilliseconds: 10_000) else { throw Failure(description: "no message within 10 s after \(count)") }
            let m = try UnixSocket.receiveMessage(on: socket, maxBytes: 64, maxFDs: 2)
            for fd in m.fds { fd.closeQuietly() }
            guard m.bytes.count >= 16 else { throw Failure(description: "short message \(m.bytes) after \(count)") }
            if count == 0 { initialID = m.bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 16, as: UInt32.self) } }
            count += 1
            descriptors += m.fds.count
            headers.append(Array(m.bytes.prefix(8)))
        }
        return headers
    }

    func close() { socket.closeQuietly() }
}
