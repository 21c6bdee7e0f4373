import Foundation
import Logging

/// A server running its loop on a thread of its own, for tests and simulations that embed
/// it in-process.
///
/// ```swift
/// let running = try ServerThread.start(configuration: config)
/// defer { running.stop() }
/// ```
public final class ServerThread: Sendable {
    /// The server (``IvshmemServer/connectedPeerIDs`` and ``IvshmemServer/counters`` are
    /// safe to read from here).
    public let server: IvshmemServer
    private let finished = DispatchSemaphore(value: 0)

    private init(server: IvshmemServer) {
        self.server = server
    }

    /// Creates the server (start-up errors are thrown here) and runs it on a new thread.
    public static func start(configuration: ServerConfiguration, logger: Logger = Logger(label: "ivshmem2.server")) throws -> ServerThread {
        let server = try IvshmemServer(configuration: configuration, logger: logger)
        let running = ServerThread(server: server)
        let thread = Thread { [running] in
            do {
                try running.server.run()
            } catch {
                logger.error("server loop failed", metadata: ["error": "\(error)"])
            }
            running.finished.signal()
        }
        thread.name = "ivshmem2-server"
        thread.start()
        return running
    }

    /// Stops the server and waits until its loop has shut down (sockets closed, files
    /// unlinked). Safe to call more than once.
    public func stop() {
        server.stop()
        finished.wait()
        finished.signal()  // later calls return at once
    }
}
