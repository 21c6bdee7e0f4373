#if canImport(Glibc)
import Glibc
#endif
import IvshmemPosix

/// A dedicated OS thread running one closure: the attached device's event loop. A thread of its
/// own (not a dispatch queue) keeps the wake-up path short: epoll → eventfd read → model.
final class EventLoopThread: @unchecked Sendable {
    private var thread = pthread_t()
    private let body: @Sendable () -> Void

    init(name: String, _ body: @escaping @Sendable () -> Void) throws {
        self.body = body
        let box = Unmanaged.passRetained(self)
        let rc = pthread_create(&thread, nil, { arg in
            let me = Unmanaged<EventLoopThread>.fromOpaque(arg!).takeRetainedValue()
            me.body()
            return nil
        }, box.toOpaque())
        if rc != 0 {
            box.release()
            throw SystemCallError(call: "pthread_create", errno: Errno(rawValue: rc), detail: name)
        }
    }

    func join() { pthread_join(thread, nil) }
    var isCurrent: Bool { pthread_equal(pthread_self(), thread) != 0 }
}
