#if canImport(Glibc)
import Glibc
#endif

/// Writes straight to fd 1 (no buffering to lose if the process is killed).
func writeStdout(_ s: String) { writeAll(fd: 1, s) }

/// Writes straight to fd 2, in as few write() calls as the descriptor takes.
func writeStderr(_ s: String) { writeAll(fd: 2, s) }

/// Writes `text` as one line on stderr with a single write() call: newlines inside it become
/// " | " and it is cut to fit PIPE_BUF, so the line arrives whole (not interleaved with other
/// writers) even when several processes share the pipe.
func writeStderrLine(_ text: String) {
    var bytes = Array(text.split(separator: "\n", omittingEmptySubsequences: true).joined(separator: " | ").utf8)
    let limit = Int(PIPE_BUF) - 1
    if bytes.count > limit {
        bytes = Array(bytes[..<(limit - 4)])
        while let last = bytes.last, last & 0xC0 == 0x80 { bytes.removeLast() }  // no cut UTF-8 sequence
        if let last = bytes.last, last >= 0xC0 { bytes.removeLast() }
        bytes += Array(" …".utf8)
    }
    bytes.append(10)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress!, $0.count) }
}

private func writeAll(fd: Int32, _ s: String) {
    let bytes = Array(s.utf8)
    var off = 0
    while off < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + off, $0.count - off) }
        if n < 0 { if errno == EINTR { continue }; return }
        off += n
    }
}
