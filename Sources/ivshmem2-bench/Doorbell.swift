#if canImport(Glibc)
import Glibc
#endif
import CBench
import Dispatch
import Histogram
import IvshmemModel
import IvshmemPlatform
import IvshmemPosix
import IvshmemServer
import IvshmemTransport
import Logging

/// A device on a platform programmed the way a driver leaves it: BARs assigned, MSI-X entry per
/// vector (data = vector) unmasked and enabled, Interrupt Control enabled. Returns BAR0's address.
func driveLikeADriver(_ link: AttachedDevice, platform: PCIPlatform) throws -> UInt64 {
    let bars = try DriverSetup.plugAndEnable(link.device, into: platform, at: try BDF(device: 3))
    guard let bar0 = bars[0] else { throw SystemCallError(call: "firmware", errno: .invalidArgument, detail: "no BAR0") }
    return bar0
}

enum Roles {
    /// The C echo side of the eventfd ping-pong (fds 3: rx, 4: tx).
    static func echoC(busy: Int32, cpu: Int32) -> Int32 {
        if cpu >= 0 { _ = cb_pin_process(cpu) }
        return cb_pingpong_echo(3, 4, busy) >= 0 ? 0 : 1
    }

    /// Device B: attaches, programs itself like a driver, and rings the other peer's vector 0
    /// from its interrupt handler (on its event-loop thread) for every MSI-X message it gets.
    static func echoDevice(socket: String, spinMicroseconds: Int, cpu: Int32) -> Int32 {
        if cpu >= 0 { _ = cb_pin_process(cpu) }  // before any thread exists: they inherit it
        let mode: WaitMode = spinMicroseconds > 0 ? .spinThenBlock(microseconds: spinMicroseconds) : .blocking
        let link: AttachedDevice
        do { link = try AttachedDevice.attach(socketPath: socket, options: AttachOptions(waitMode: mode)) } catch {
            writeErr("echo-device: attach failed: \(error)\n")
            return 1
        }
        defer { link.close() }
        let platform = PCIPlatform()
        let bar0: UInt64
        do { bar0 = try driveLikeADriver(link, platform: platform) } catch {
            writeErr("echo-device: \(error)\n")
            return 1
        }
        let me = link.device.id
        guard link.waitForPeers(timeout: 10, { $0.contains { $0 != me } }) else {
            writeErr("echo-device: the other peer never appeared\n")
            return 1
        }
        let other = link.activePeers.first { $0 != me }!
        let doorbell = bar0 + 0x0C
        let value = UInt64(other) << 16 | 0
        platform.interrupts.addHandler { [platform] r in
            if case .msix = r.kind { platform.mmioWrite(doorbell, size: 4, value: value) }
        }
        writeOut("ready \(me)\n")
        // Until the parent closes our stdin.
        var b: UInt8 = 0
        while true {
            let n = (try? withUnsafeMutableBytes(of: &b) { try FileDescriptor.standardInput.read(into: $0) }) ?? 0
            if n <= 0 { break }
        }
        return 0
    }
}

/// One latency distribution: samples in ns.
struct LatencyResult {
    var label: String
    var mode: String        // blocking | spin
    var placement: Placement
    var isBaseline: Bool
    var histogram: Histogram<UInt64>
    var samples: Int
    var error: String?

    func percentile(_ p: Double) -> Double { Double(histogram.valueAtPercentile(p)) / 1000 }  // µs
}

final class RoundTrip: @unchecked Sendable {
    let capacity: Int
    let samples: UnsafeMutablePointer<UInt64>
    var count = 0
    var start: UInt64 = 0
    var deadline: UInt64 = 0
    var ring: () -> Void = {}
    let done = DispatchSemaphore(value: 0)

    init(capacity: Int) {
        self.capacity = capacity
        samples = .allocate(capacity: capacity)
    }
    deinit { samples.deallocate() }

    /// Called on A's event-loop thread for each MSI-X message.
    func arrived() {
        let now = nowNS()
        samples[count] = now - start
        count += 1
        if count < capacity && now < deadline {
            start = nowNS()
            ring()
        } else {
            done.signal()
        }
    }
}

struct DoorbellBench {
    let iterations: Int
    let budgetNS: UInt64
    let spinMicroseconds = 200

    static func histogram(_ samples: UnsafeBufferPointer<UInt64>, dropping warmup: Int) -> Histogram<UInt64> {
        var h = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
        for s in samples.dropFirst(min(warmup, max(samples.count - 1, 0))) { _ = h.record(s) }
        return h
    }

    func warmup(_ n: Int) -> Int { max(20, n / 100) }

    /// The C eventfd ping-pong between this process and a spawned echo process.
    func baseline(busy: Bool, placement: Placement) -> LatencyResult {
        let label = busy ? "C eventfd busy-poll ping-pong" : "C eventfd blocking ping-pong"
        var result = LatencyResult(label: label, mode: busy ? "spin" : "blocking", placement: placement, isBaseline: true,
                                   histogram: Histogram<UInt64>(highestTrackableValue: 60_000_000_000), samples: 0)
        let toEcho = cb_eventfd(busy ? 1 : 0), fromEcho = cb_eventfd(busy ? 1 : 0)
        defer { close(toEcho); close(fromEcho) }
        guard toEcho >= 0, fromEcho >= 0 else { result.error = "eventfd failed"; return result }
        let exe: String
        do { exe = try SpawnedProcess.currentExecutablePath() } catch { result.error = "\(error)"; return result }
        let child: SpawnedProcess
        do {
            child = try SpawnedProcess.spawn(executable: exe, arguments: ["echo-c", busy ? "1" : "0", String(placement.cpuB)],
                                             extraDescriptors: [(FileDescriptor(rawValue: toEcho), 3), (FileDescriptor(rawValue: fromEcho), 4)])
        } catch { result.error = "spawn: \(error)"; return result }
        _ = cb_pin_process(placement.cpuA)
        defer { _ = cb_pin_process(-1) }
        let samples = UnsafeMutablePointer<UInt64>.allocate(capacity: iterations)
        defer { samples.deallocate() }
        let n = cb_pingpong_initiate(fromEcho, toEcho, iterations, budgetNS, busy ? 1 : 0, samples)
        let status = try? child.waitWithTimeout(seconds: 10)
        if status == nil { try? child.signal(SIGKILL); _ = try? child.wait() }
        guard n > 0 else { result.error = "ping-pong failed"; return result }
        result.histogram = Self.histogram(UnsafeBufferPointer(start: samples, count: n), dropping: warmup(n))
        result.samples = Int(result.histogram.totalCount)
        return result
    }

    /// Device A (here) rings device B (a spawned process) whose interrupt handler rings A back.
    func devices(spin: Bool, placement: Placement) -> LatencyResult {
        let label = spin ? "device doorbell round trip, spin-then-block \(spinMicroseconds) µs" : "device doorbell round trip, blocking"
        var result = LatencyResult(label: label, mode: spin ? "spin" : "blocking", placement: placement, isBaseline: false,
                                   histogram: Histogram<UInt64>(highestTrackableValue: 60_000_000_000), samples: 0)
        let directory: String
        do { directory = try FileSystem.makeTemporaryDirectory(template: "/tmp/ivshmem2-bench.XXXXXX") } catch { result.error = "\(error)"; return result }
        defer { FileSystem.removeDirectoryTree(directory) }
        var config = ServerConfiguration()
        config.socketPath = directory + "/s.sock"
        config.maxPeers = 2
        config.vectors = 1
        config.size = 1 << 20
        var logger = Logger(label: "bench-server")
        logger.logLevel = .critical
        // Pin before the server and device threads exist; they inherit it.
        _ = cb_pin_process(placement.cpuA)
        defer { _ = cb_pin_process(-1) }
        let server: ServerThread
        do { server = try ServerThread.start(configuration: config, logger: logger) } catch { result.error = "server: \(error)"; return result }
        defer { server.stop() }
        let mode: WaitMode = spin ? .spinThenBlock(microseconds: spinMicroseconds) : .blocking
        let link: AttachedDevice
        do { link = try AttachedDevice.attach(socketPath: config.socketPath, options: AttachOptions(waitMode: mode)) } catch {
            result.error = "attach: \(error)"; return result
        }
        defer { link.close() }
        let platform = PCIPlatform()
        let bar0: UInt64
        do { bar0 = try driveLikeADriver(link, platform: platform) } catch { result.error = "\(error)"; return result }
        let exe: String
        do { exe = try SpawnedProcess.currentExecutablePath() } catch { result.error = "\(error)"; return result }
        let child: SpawnedProcess
        do {
            child = try SpawnedProcess.spawn(executable: exe, arguments: ["echo-device", config.socketPath, spin ? String(spinMicroseconds) : "0", String(placement.cpuB)],
                                             standardInput: .pipe, standardOutput: .pipe)
        } catch { result.error = "spawn: \(error)"; return result }
        defer {
            child.standardInput?.closeQuietly()
            if (try? child.waitWithTimeout(seconds: 10)) == nil { try? child.signal(SIGKILL); _ = try? child.wait() }
            child.closePipes()
        }
        guard let ready = readLine(from: child.standardOutput!, timeout: 15), ready.hasPrefix("ready "),
              let peerB = UInt32(ready.dropFirst(6)) else { result.error = "device B did not start"; return result }
        guard link.waitForPeers(timeout: 10, { $0.contains(peerB) }) else { result.error = "device B never became active"; return result }
        let trip = RoundTrip(capacity: iterations)
        let doorbell = bar0 + 0x0C
        let value = UInt64(peerB) << 16 | 0
        trip.ring = { [platform] in platform.mmioWrite(doorbell, size: 4, value: value) }
        platform.interrupts.addHandler { [trip] r in
            if case .msix = r.kind { trip.arrived() }
        }
        trip.deadline = nowNS() + budgetNS
        trip.start = nowNS()
        trip.ring()
        if trip.done.wait(timeout: .now() + .seconds(Int(budgetNS / 1_000_000_000) + 30)) == .timedOut {
            result.error = "round trips stalled after \(trip.count)"
            return result
        }
        result.histogram = Self.histogram(UnsafeBufferPointer(start: trip.samples, count: trip.count), dropping: warmup(trip.count))
        result.samples = Int(result.histogram.totalCount)
        return result
    }

    func run(placements: [Placement]) -> [LatencyResult] {
        var out: [LatencyResult] = []
        for spin in [false, true] {
            for p in placements {
                out.append(baseline(busy: spin, placement: p))
                out.append(devices(spin: spin, placement: p))
            }
        }
        return out
    }
}
