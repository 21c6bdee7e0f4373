import IvshmemServer

/// An embedded server for a test (the real server code on its own thread, logging only
/// critical errors) on a fresh socket path; `stop()` ends it and removes its directory.
public final class TestServer {
    public let running: PrivateServer
    public var path: String { running.socketPath }
    public var thread: ServerThread { running.thread }

    public init(maxPeers: UInt64 = 4, vectors: UInt64 = 2, size: UInt64 = 1 << 20, outputSectionSize: UInt64 = 0x10000, protocolValue: UInt64 = 0) throws {
        var c = ServerConfiguration()
        c.maxPeers = maxPeers
        c.vectors = vectors
        c.size = size
        c.outputSectionSize = outputSectionSize
        c.protocolValue = protocolValue
        running = try PrivateServer(configuration: c, prefix: "ivshmem2-test", label: "test-server", logLevel: .critical)
    }

    public func stop() { running.stop() }
}
