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

/// A device on a platform programmed the way a driver leaves it: BARs assigned, MSI-X entry per
/// vector (data = vector) unmasked and enabled, Interrupt Control enabled. Returns BAR0's address.
func driveLikeADriver(_ link: AttachedDevice, platform: PCIPlatform) throws -> UInt64 {
    let bars = try DriverSetup.plugAndEnable(link.device, into: platform, at: try BDF(device: 3))
    guard let bar0 = bars[0] else { throw SystemCallError(call: "firmware", errno: .invalidArgument, detail: "no BAR0") }
    return bar0
}

enum Roles {
    /// The C echo side of the eventfd ping-pong (fds 3: rx, 4: tx).
    static func echoC(mode: cb_wait_mode, spinMicroseconds: Int, cpu: Int32) -> Int32 {
        if cpu >= 0 { _ = cb_pin_process(cpu) }
        return cb_pingpong_echo(3, 4, mode, UInt64(spinMicroseconds) * 1000) >= 0 ? 0 : 1
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
        let doorbell = bar0 + link.device.registerOffsets.doorbell
        let value = UInt64(BAR0Registers.doorbellValue(peer: other, vector: 0))
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
    var mode: String        // blocking | spin | trapped (blocking, A rings through a trapped window)
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
    /// The spin budget of every spin-then-block wait, ours and C's.
    static let spinMicroseconds = 200
    var spinMicroseconds: Int { Self.spinMicroseconds }

    static func histogram(_ samples: UnsafeBufferPointer<UInt64>, dropping warmup: Int) -> Histogram<UInt64> {
        var h = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
        for s in samples.dropFirst(min(warmup, max(samples.count - 1, 0))) { _ = h.record(s) }
        return h
    }

    func warmup(_ n: Int) -> Int { max(20, n / 100) }

    /// The C eventfd ping-pong between this process and a spawned echo process, both sides
    /// waiting as `wait` says (spin-then-block with the devices' spin budget).
    func baseline(_ wait: cb_wait_mode, placement: Placement) -> LatencyResult {
        let label: String, mode: String
        switch wait {
        case CB_WAIT_BUSY: (label, mode) = ("C eventfd busy-poll ping-pong", "spin")
        case CB_WAIT_SPIN_THEN_BLOCK: (label, mode) = ("C eventfd spin-then-block \(spinMicroseconds) µs ping-pong", "spin")
        case CB_WAIT_LINK_BLOCKING: (label, mode) = ("C eventfd ping-pong with the link's syscalls (epoll_wait, read; poll, write)", "blocking-link")
        case CB_WAIT_LINK_BUSY: (label, mode) = ("C eventfd busy-poll ping-pong with the link's poll before each write", "spin-link")
        default: (label, mode) = ("C eventfd blocking ping-pong", "blocking")
        }
        var result = LatencyResult(label: label, mode: mode, placement: placement, isBaseline: true,
                                   histogram: Histogram<UInt64>(highestTrackableValue: 60_000_000_000), samples: 0)
        let nonblocking: Int32 = wait == CB_WAIT_BLOCKING ? 0 : 1
        let toEcho = cb_eventfd(nonblocking), fromEcho = cb_eventfd(nonblocking)
        defer { close(toEcho); close(fromEcho) }
        guard toEcho >= 0, fromEcho >= 0 else { result.error = "eventfd failed"; return result }
        let exe: String
        do { exe = try SpawnedProcess.currentExecutablePath() } catch { result.error = "\(error)"; return result }
        let child: SpawnedProcess
        do {
            child = try SpawnedProcess.spawn(executable: exe, arguments: ["echo-c", String(wait.rawValue), String(spinMicroseconds), String(placement.cpuB)],
                                             extraDescriptors: [(FileDescriptor(rawValue: toEcho), 3), (FileDescriptor(rawValue: fromEcho), 4)])
        } catch { result.error = "spawn: \(error)"; return result }
        _ = cb_pin_process(placement.cpuA)
        defer { _ = cb_pin_process(-1) }
        let samples = UnsafeMutablePointer<UInt64>.allocate(capacity: iterations)
        defer { samples.deallocate() }
        let n = cb_pingpong_initiate(fromEcho, toEcho, iterations, budgetNS, wait, UInt64(spinMicroseconds) * 1000, samples)
        let status = try? child.waitWithTimeout(seconds: 10)
        if status == nil { try? child.signal(SIGKILL); _ = try? child.wait() }
        guard n > 0 else { result.error = "ping-pong failed"; return result }
        result.histogram = Self.histogram(UnsafeBufferPointer(start: samples, count: n), dropping: warmup(n))
        result.samples = Int(result.histogram.totalCount)
        return result
    }

    /// Device A (here, built by `makeSideA` once the server runs) rings device B (a spawned
    /// process, `spin` its wait mode) whose interrupt handler rings A back.
    func roundTrip(label: String, mode: String, spin: Bool, placement: Placement,
                   makeSideA: (String) throws -> any RingingSide) -> LatencyResult {
        var result = LatencyResult(label: label, mode: mode, placement: placement, isBaseline: false,
                                   histogram: Histogram<UInt64>(highestTrackableValue: 60_000_000_000), samples: 0)
        // Pin before the server and device threads exist; they inherit it.
        _ = cb_pin_process(placement.cpuA)
        defer { _ = cb_pin_process(-1) }
        let server: PrivateServer
        do { server = try benchServer() } catch { result.error = "server: \(error)"; return result }
        defer { server.stop() }
        let sideA: any RingingSide
        do { sideA = try makeSideA(server.socketPath) } catch { result.error = "device A: \(error)"; return result }
        defer { sideA.close() }
        let exe: String
        do { exe = try SpawnedProcess.currentExecutablePath() } catch { result.error = "\(error)"; return result }
        let child: SpawnedProcess
        do {
            child = try SpawnedProcess.spawn(executable: exe, arguments: ["echo-device", server.socketPath, spin ? String(spinMicroseconds) : "0", String(placement.cpuB)],
                                             standardInput: .pipe, standardOutput: .pipe)
        } catch { result.error = "spawn: \(error)"; return result }
        defer {
            child.standardInput?.closeQuietly()
            if (try? child.waitWithTimeout(seconds: 10)) == nil { try? child.signal(SIGKILL); _ = try? child.wait() }
            child.closePipes()
        }
        guard let ready = readLine(from: child.standardOutput!, timeout: 15), ready.hasPrefix("ready "),
              let peerB = UInt32(ready.dropFirst(6)) else { result.error = "device B did not start"; return result }
        guard sideA.waitForPeer(peerB, timeout: 10) else { result.error = "device B never became active"; return result }
        let trip = RoundTrip(capacity: iterations)
        sideA.connect(trip, to: peerB)
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

    /// Both devices ring through `PCIPlatform.mmioWrite`.
    func devices(spin: Bool, placement: Placement) -> LatencyResult {
        let label = spin ? "device doorbell round trip, spin-then-block \(spinMicroseconds) µs" : "device doorbell round trip, blocking"
        let mode: WaitMode = spin ? .spinThenBlock(microseconds: spinMicroseconds) : .blocking
        return roundTrip(label: label, mode: spin ? "spin" : "blocking", spin: spin, placement: placement) { socket in
            try PlatformSide(socketPath: socket, waitMode: mode)
        }
    }

    /// Device A is a C API device whose doorbell store goes through a trapped MMIO window
    /// (SIGSEGV, instruction decode, then the same model path); B as in `devices`, blocking.
    func trappedWindow(placement: Placement) -> LatencyResult {
        roundTrip(label: "device doorbell round trip, blocking, A rings through a trapped MMIO window (C API)", mode: "trapped",
                  spin: false, placement: placement) { socket in try TrappedWindowSide(socketPath: socket) }
    }

    /// Blocking: the C blocking ping-pong, our devices, and A ringing through a trapped
    /// window. Spin-then-block: across CPUs and unpinned against the C busy-poll; on one CPU
    /// against a C loop with the same spin budget (two pinned busy-pollers only take turns
    /// per scheduler slice, which measures the scheduler).
    func run(placements: [Placement]) -> [LatencyResult] {
        var out: [LatencyResult] = []
        for p in placements {
            out.append(baseline(CB_WAIT_BLOCKING, placement: p))
            out.append(baseline(CB_WAIT_LINK_BLOCKING, placement: p))
            out.append(devices(spin: false, placement: p))
            out.append(trappedWindow(placement: p))
        }
        for p in placements {
            out.append(baseline(p.sharesOneCPU ? CB_WAIT_SPIN_THEN_BLOCK : CB_WAIT_BUSY, placement: p))
            if !p.sharesOneCPU { out.append(baseline(CB_WAIT_LINK_BUSY, placement: p)) }
            out.append(devices(spin: true, placement: p))
        }
        return out
    }
}

/// Device A of a round trip: attached and programmed like a driver.
protocol RingingSide: AnyObject {
    /// Whether peer `id` became active within `timeout` seconds.
    func waitForPeer(_ id: UInt32, timeout: Double) -> Bool
    /// From now on: `trip.ring()` rings `peer`'s vector 0, and each MSI-X message A receives
    /// calls `trip.arrived()`.
    func connect(_ trip: RoundTrip, to peer: UInt32)
    func close()
}

/// A Swift device on a `PCIPlatform`, ringing through `mmioWrite`.
final class PlatformSide: RingingSide {
    let link: AttachedDevice
    let platform = PCIPlatform()
    let bar0: UInt64

    init(socketPath: String, waitMode: WaitMode) throws {
        link = try AttachedDevice.attach(socketPath: socketPath, options: AttachOptions(waitMode: waitMode))
        do { bar0 = try driveLikeADriver(link, platform: platform) } catch { link.close(); throw error }
    }

    func waitForPeer(_ id: UInt32, timeout: Double) -> Bool { link.waitForPeers(timeout: timeout) { $0.contains(id) } }

    func connect(_ trip: RoundTrip, to peer: UInt32) {
        let doorbell = bar0 + link.device.registerOffsets.doorbell
        let value = UInt64(BAR0Registers.doorbellValue(peer: peer, vector: 0))
        trip.ring = { [platform] in platform.mmioWrite(doorbell, size: 4, value: value) }
        platform.interrupts.addHandler { [trip] r in
            if case .msix = r.kind { trip.arrived() }
        }
    }

    func close() { link.close() }
}
