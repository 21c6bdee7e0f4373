#if canImport(Glibc)
import Glibc
#endif
import Foundation
import IvshmemPosix
import IvshmemServer
import IvshmemVirtio
import Logging

struct VirtioThroughput {
    var request: Int
    var direction: String   // "write" or "read"
    var oursMBps: Double
    var fileMBps: Double
}

struct VirtioLatency {
    var samples: Int
    var oursUS: [Double]    // sorted round-trip times
    var pipeUS: [Double]
    func percentile(_ v: [Double], _ p: Double) -> Double { v.isEmpty ? .nan : v[min(v.count - 1, Int(Double(v.count) * p / 100))] }
}

/// Virtio over ivshmem between two emulated peers over our server, in one process (the
/// back-end on its loop thread): sequential block throughput against plain pread/pwrite of the
/// same requests on a file, and the console's byte round trip (front-end → back-end echo →
/// front-end) against a one-byte echo through two pipes between two threads.
struct VirtioBench {
    let bytesPerMeasurement: Int
    let roundTrips: Int

    private func server(protocolValue: UInt64, directory: String) throws -> (ServerThread, String) {
        var c = ServerConfiguration()
        c.socketPath = directory + "/sock-\(protocolValue)"
        c.maxPeers = 2
        c.vectors = 2
        c.size = 4 << 20
        c.outputSectionSize = 0
        c.protocolValue = protocolValue
        var logger = Logger(label: "virtio-bench")
        logger.logLevel = .critical
        return (try ServerThread.start(configuration: c, logger: logger), c.socketPath)
    }

    func run() throws -> ([VirtioThroughput], VirtioLatency) {
        let dir = try FileSystem.makeTemporaryDirectory(template: "/tmp/ivshmem2-bench-virtio.XXXXXX")
        defer { FileSystem.removeDirectoryTree(dir) }
        return (try block(dir), try console(dir))
    }

    // MARK: block

    private func block(_ dir: String) throws -> [VirtioThroughput] {
        let imageBytes = 16 << 20
        let image = try FileDescriptor.open(dir + "/disk.img", flags: O_RDWR | O_CREAT, mode: 0o600)
        defer { image.closeQuietly() }
        try image.truncate(to: imageBytes)
        let baselineFile = try FileDescriptor.open(dir + "/copy.img", flags: O_RDWR | O_CREAT, mode: 0o600)
        defer { baselineFile.closeQuietly() }
        try baselineFile.truncate(to: imageBytes)

        let (srv, socket) = try server(protocolValue: 0xC002, directory: dir)
        defer { srv.stop() }
        let back = try VirtioEndpoint.attach(socketPath: socket)
        defer { back.close() }
        let runner = try BackendRunner(backend: VirtioBackend(endpoint: back, device: BlockBackEnd(image: image, imageBytes: UInt64(imageBytes))))
        runner.start()
        defer { runner.stop() }
        guard Monotonic.poll(timeout: 10, { back.ownState == 1 }) else { throw BenchError("the block back-end did not become ready") }
        let front = try VirtioEndpoint.attach(socketPath: socket)
        defer { front.close() }
        let disk = try BlockDriver(frontend: VirtioFrontend(endpoint: front), maxTransfer: 64 << 10)

        var out: [VirtioThroughput] = []
        for request in [4 << 10, 64 << 10] {
            let count = max(1, bytesPerMeasurement / request)
            let data = [UInt8](repeating: 0x3C, count: request)
            var local = [UInt8](repeating: 0, count: request)
            for direction in ["write", "read"] {
                // Warm the page cache and both paths once.
                try data.withUnsafeBytes { p in for k in 0..<(imageBytes / request) { _ = try baselineFile.write(p, at: UInt64(k * request)) } }
                var t0 = Monotonic.now()
                for k in 0..<count {
                    let sector = UInt64((k * request) % imageBytes / 512)
                    if direction == "write" { try disk.write(sector: sector, bytes: data) } else { _ = try disk.read(sector: sector, count: request) }
                }
                let ours = Double(count * request) / (Monotonic.now() - t0) / 1e6
                t0 = Monotonic.now()
                for k in 0..<count {
                    let at = UInt64((k * request) % imageBytes)
                    if direction == "write" {
                        _ = try data.withUnsafeBytes { try baselineFile.write($0, at: at) }
                    } else {
                        _ = try local.withUnsafeMutableBytes { try baselineFile.read(into: $0, at: at) }
                    }
                }
                let file = Double(count * request) / (Monotonic.now() - t0) / 1e6
                out.append(VirtioThroughput(request: request, direction: direction, oursMBps: ours, fileMBps: file))
            }
        }
        disk.frontend.remove()
        return out
    }

    // MARK: console

    private func console(_ dir: String) throws -> VirtioLatency {
        let (srv, socket) = try server(protocolValue: 0xC003, directory: dir)
        defer { srv.stop() }
        let back = try VirtioEndpoint.attach(socketPath: socket)
        defer { back.close() }
        let echo = ConsoleBackEnd(output: nil)
        echo.onTransmit = { bytes, backend in echo.feed(bytes, backend: backend) }
        let runner = try BackendRunner(backend: VirtioBackend(endpoint: back, device: echo))
        runner.start()
        defer { runner.stop() }
        guard Monotonic.poll(timeout: 10, { back.ownState == 1 }) else { throw BenchError("the console back-end did not become ready") }
        let front = try VirtioEndpoint.attach(socketPath: socket)
        defer { front.close() }
        let driver = try ConsoleDriver(frontend: VirtioFrontend(endpoint: front))
        var ours: [Double] = []
        for k in 0..<roundTrips + 20 {
            let t0 = nowNS()
            try driver.write([UInt8(truncatingIfNeeded: k)])
            var got: [UInt8] = []
            while got.isEmpty { got = try driver.read() }
            if k >= 20 { ours.append(Double(nowNS() - t0) / 1000) }
        }
        driver.frontend.remove()
        return VirtioLatency(samples: roundTrips, oursUS: ours.sorted(), pipeUS: try pipeEcho().sorted())
    }

    /// One byte A → B through a pipe and back through another, B a second thread.
    private func pipeEcho() throws -> [Double] {
        let (toEchoR, toEchoW) = try SpawnedProcess.makePipe()
        let (backR, backW) = try SpawnedProcess.makePipe()
        defer { for fd in [toEchoR, toEchoW, backR, backW] { fd.closeQuietly() } }
        let total = roundTrips + 20
        let finished = try EventFD.create()
        defer { finished.close() }
        let echo = Thread {
            var b: UInt8 = 0
            for _ in 0..<total {
                guard (try? withUnsafeMutableBytes(of: &b) { try toEchoR.read(into: $0) }) == 1 else { break }
                _ = try? withUnsafeBytes(of: &b) { try backW.write($0) }
            }
            try? finished.signal()
        }
        echo.start()
        var samples: [Double] = []
        var b: UInt8 = 0
        for k in 0..<total {
            let t0 = nowNS()
            _ = try withUnsafeBytes(of: &b) { try toEchoW.write($0) }
            _ = try withUnsafeMutableBytes(of: &b) { try backR.read(into: $0) }
            if k >= 20 { samples.append(Double(nowNS() - t0) / 1000) }
        }
        _ = try finished.wait(timeoutMilliseconds: 10_000)
        return samples
    }
}
