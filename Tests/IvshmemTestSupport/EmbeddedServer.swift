import IvshmemPosix
import IvshmemServer
import Logging

/// An embedded server (the real server code on its own thread, logging only critical errors)
/// on a fresh socket path; `stop()` ends it and removes its directory.
public final class TestServer {
    public let directory: String
    public let path: String
    public let thread: ServerThread

    public init(maxPeers: UInt64 = 4, vectors: UInt64 = 2, size: UInt64 = 1 << 20, outputSectionSize: UInt64 = 0x10000, protocolValue: UInt64 = 0) throws {
        directory = try FileSystem.makeTemporaryDirectory(template: "/tmp/ivshmem2-test.XXXXXX")
        path = directory + "/ivshmem.sock"
        var c = ServerConfiguration()
        c.socketPath = path
        c.maxPeers = maxPeers
        c.vectors = vectors
        c.size = size
        c.outputSectionSize = outputSectionSize
        c.protocolValue = protocolValue
        var logger = Logger(label: "test-server")
        logger.logLevel = .critical
        do { thread = try ServerThread.start(configuration: c, logger: logger) } catch {
            FileSystem.removeDirectoryTree(directory)
            throw error
        }
    }

    public func stop() {
        thread.stop()
        FileSystem.removeDirectoryTree(directory)
    }
}
