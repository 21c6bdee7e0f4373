import IvshmemPosix
import Logging

/// A server thread on a socket in a fresh private directory (`/tmp/<prefix>.XXXXXX/ivshmem.sock`),
/// for the tools, harness, tests and benchmarks that embed a server of their own: one place
/// that creates the directory, starts the thread and cleans both up. `stop()` ends the server
/// and removes the directory; it is idempotent.
public final class PrivateServer: Sendable {
    public let directory: String
    public let socketPath: String
    public let thread: ServerThread
    public var server: IvshmemServer { thread.server }

    /// Starts a server with `configuration` (its socket path is replaced) logging at `logLevel`.
    public init(configuration: ServerConfiguration, prefix: String = "ivshmem2-server", label: String = "ivshmem2.server",
                logLevel: Logger.Level = .error) throws {
        directory = try FileSystem.makeTemporaryDirectory(template: "/tmp/\(prefix).XXXXXX")
        socketPath = directory + "/ivshmem.sock"
        var config = configuration
        config.socketPath = socketPath
        var logger = Logger(label: label)
        logger.logLevel = logLevel
        do { thread = try ServerThread.start(configuration: config, logger: logger) } catch {
            FileSystem.removeDirectoryTree(directory)
            throw error
        }
    }

    public func stop() {
        thread.stop()
        FileSystem.removeDirectoryTree(directory)
    }
}
