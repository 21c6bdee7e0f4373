import Foundation
import IvshmemPosix
import IvshmemSync

/// A ready-made event loop for one back-end, for tools and tests (the library itself owns no
/// loop): a thread waits in epoll on the back-end's descriptors, an optional input descriptor
/// and a wake-up eventfd, and calls `process()`. Work for the device (feeding console input,
/// pausing) is handed to the loop thread with `perform`, so the back-end is only ever touched
/// from that thread.
public final class BackendRunner: @unchecked Sendable {
    public let backend: VirtioBackend
    private let wake: EventFD
    private let finished: EventFD
    private let jobs = Locked<[@Sendable (VirtioBackend) -> Void]>([])
    private let stopping = Locked(false)
    private let paused = Locked(false)
    private let input: FileDescriptor?
    private let onInput: (@Sendable ([UInt8], VirtioBackend) -> Void)?

    /// `input` (optional): read whenever readable, its bytes handed to `onInput` on the loop thread.
    public init(backend: VirtioBackend, input: FileDescriptor? = nil, onInput: (@Sendable ([UInt8], VirtioBackend) -> Void)? = nil) throws {
        self.backend = backend
        self.input = input
        self.onInput = onInput
        wake = try EventFD.create()
        finished = try EventFD.create()
    }

    public func start() {
        let thread = Thread { [self] in
            defer { try? finished.signal() }
            do { try loop() } catch {
                backend.findings.record("VIRTIO-STATE-1", .backEnd, "back-end loop stopped: \(error)")
            }
        }
        thread.name = "virtio-backend"
        thread.start()
    }

    private func loop() throws {
        let epoll = try Epoll()
        defer { epoll.close() }
        try epoll.add(backend.endpoint.interrupts.fd, events: .readable, token: 0)
        try epoll.add(wake.fd, events: .readable, token: 1)
        if let input { try epoll.add(input, events: .readable, token: 2) }
        backend.start()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !stopping.withLock({ $0 }) {
            var inputReady = false
            _ = try epoll.wait(timeoutMilliseconds: 1000) { token, _ in
                if token == 1 { _ = try? wake.tryConsume() }
                if token == 2 { inputReady = true }
            }
            for job in jobs.withLock({ j -> [@Sendable (VirtioBackend) -> Void] in let out = j; j.removeAll(); return out }) { job(backend) }
            if inputReady, let input {
                let n = try buffer.withUnsafeMutableBytes { try input.read(into: $0) }
                if n > 0 { onInput?(Array(buffer[0..<n]), backend) } else { try epoll.remove(input) }
            }
            if !paused.withLock({ $0 }) { backend.process() }
        }
    }

    /// Runs `job` on the loop thread (soon; not waited for).
    public func perform(_ job: @escaping @Sendable (VirtioBackend) -> Void) {
        jobs.withLock { $0.append(job) }
        try? wake.signal()
    }

    /// Runs `body` on the loop thread and returns its result (nil if the loop does not answer
    /// within `timeout` seconds): how other threads read the back-end's state.
    public func inspect<T: Sendable>(timeout: Double = 10, _ body: @escaping @Sendable (VirtioBackend) -> T) -> T? {
        let result = Locked<T?>(nil)
        guard let answered = try? EventFD.create() else { return nil }
        defer { answered.close() }
        perform { b in
            result.withLock { $0 = body(b) }
            try? answered.signal()
        }
        guard (try? answered.wait(timeoutMilliseconds: Int32(timeout * 1000))) == true else { return nil }
        return result.withLock { $0 }
    }

    /// While paused the back-end processes nothing: a write transaction stays pending (for
    /// tests of VIRTIO-WT-3).
    public func setPaused(_ on: Bool) {
        paused.withLock { $0 = on }
        try? wake.signal()
    }

    /// Stops the loop and waits for the thread to end (at most `timeout` seconds).
    public func stop(timeout: Double = 10) {
        stopping.withLock { $0 = true }
        try? wake.signal()
        _ = try? finished.wait(timeoutMilliseconds: Int32(timeout * 1000))
        wake.close()
        finished.close()
    }
}
