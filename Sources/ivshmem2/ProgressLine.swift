import IvshmemPosix
import IvshmemSync

/// A one-line progress display on stderr — `[123/570] 4.1 s, 0 failed: device-msix.ivs` —
/// rewritten in place, only when stderr is a terminal (and not with -q): a pipe or a log file
/// gets nothing from it. Safe to call from any thread.
final class ProgressLine: Sendable {
    private struct State {
        var lastDraw = 0.0
        var failed = 0
        var shown = false
    }
    private let enabled: Bool
    private let start = Monotonic.now()
    private let state = Locked(State())

    init(quiet: Bool) {
        enabled = !quiet && FileDescriptor.standardError.isTerminal
    }

    /// Notes a finished item and redraws (at most ten times a second, and at the last item).
    func update(done: Int, total: Int, failed: Bool, label: String) {
        guard enabled else { return }
        let now = Monotonic.now()
        let line: String? = state.withLock { s in
            if failed { s.failed += 1 }
            guard now - s.lastDraw >= 0.1 || done == total else { return nil }
            s.lastDraw = now
            s.shown = true
            let seconds = Double(Int((now - start) * 10)) / 10
            return "\r\u{1B}[K[\(done)/\(total)] \(seconds) s, \(s.failed) failed: \(label)"
        }
        if let line { writeStderr(line) }
    }

    /// Prints `text` (a whole line) above the progress line.
    func print(_ text: String) {
        if enabled && state.withLock({ $0.shown }) { writeStderr("\r\u{1B}[K") }
        writeStderr(text)
    }

    /// Erases the progress line.
    func finish() {
        guard enabled, state.withLock({ $0.shown }) else { return }
        writeStderr("\r\u{1B}[K")
    }
}
