import IvshmemPosix

/// Virtio console (device ID 3) over ivshmem (VIRTIO-CON-1): queue 0 receiveq (back-end →
/// front-end, the back-end fills the driver's writable buffers), queue 1 transmitq (front-end →
/// back-end), VIRTIO_CONSOLE_F_SIZE with cols and rows in the configuration.
public enum VirtioConsole {
    public static let receiveQueue = 0
    public static let transmitQueue = 1
    public static let featureSize: UInt64 = 1 << 0
    public static let queueSize: UInt16 = 64
}

/// The console's back-end: what the front-end transmits goes to `output` (and to
/// `onTransmit`, if set); `feed` queues bytes for the front-end's receive queue.
public final class ConsoleBackEnd: VirtioDeviceImplementation, @unchecked Sendable {
    public let deviceID = VirtioDeviceID.console
    public let deviceFeatures = VirtioConsole.featureSize
    public let queueSizes = [VirtioConsole.queueSize, VirtioConsole.queueSize]
    public var columns: UInt16
    public var rows: UInt16
    private let output: FileDescriptor?
    /// Called on the back-end's thread with every transmitted buffer (an echo feeds them back).
    public var onTransmit: (([UInt8], VirtioBackend) -> Void)?
    private var pending: [UInt8] = []
    public private(set) var bytesTransmitted = 0

    public init(output: FileDescriptor?, columns: UInt16 = 80, rows: UInt16 = 25) {
        self.output = output
        self.columns = columns
        self.rows = rows
    }

    public func initialConfig() -> [UInt8] {
        // struct virtio_console_config: cols u16, rows u16, max_nr_ports u32, emerg_wr u32.
        var c = [UInt8](repeating: 0, count: 12)
        c[0] = UInt8(columns & 0xFF); c[1] = UInt8(columns >> 8)
        c[2] = UInt8(rows & 0xFF); c[3] = UInt8(rows >> 8)
        return c
    }

    public func deviceReset() { pending.removeAll() }

    public func queueNotified(_ queue: DeviceQueue, backend: VirtioBackend) {
        if queue.index == VirtioConsole.transmitQueue {
            var received: [UInt8] = []
            var any = false
            while let chain = queue.pop() {
                for b in chain.readable { received += backend.endpoint.rw.bytes(at: b.offset, count: b.length) }
                queue.push(head: chain.head, written: 0)
                any = true
            }
            if any { backend.notify(queue) }
            bytesTransmitted += received.count
            if !received.isEmpty {
                try? output?.writeAll(received)
                onTransmit?(received, backend)
            }
        } else {
            deliver(backend)
        }
    }

    /// Queues `bytes` for the front-end and delivers what the receive queue has room for.
    public func feed(_ bytes: [UInt8], backend: VirtioBackend) {
        pending += bytes
        deliver(backend)
    }

    private func deliver(_ backend: VirtioBackend) {
        guard backend.status.contains(.driverOK), !pending.isEmpty, let rx = backend.queue(VirtioConsole.receiveQueue) else { return }
        var any = false
        while !pending.isEmpty, let chain = rx.pop() {
            var written = 0
            for b in chain.writable where written < pending.count {
                let n = min(b.length, pending.count - written)
                pending[written..<(written + n)].withUnsafeBytes { backend.endpoint.rw.copyIn($0, at: b.offset) }
                written += n
            }
            pending.removeFirst(written)
            rx.push(head: chain.head, written: UInt32(written))
            any = true
        }
        if any { backend.notify(rx) }
    }
}

/// The console's front-end driver (what virtio_console does in a guest, minus the tty).
public final class ConsoleDriver: @unchecked Sendable {
    public let frontend: VirtioFrontend
    public let receive: DriverQueue
    public let transmit: DriverQueue
    public private(set) var columns: UInt16 = 0
    public private(set) var rows: UInt16 = 0
    private let bufferSize = 1024
    private let transmitBuffer: Int
    private var receiveBuffers: [UInt16: Int] = [:]

    /// Probes, negotiates, sets up both queues with receive buffers posted, DRIVER_OK.
    public init(frontend: VirtioFrontend, timeout: Double = 10) throws {
        self.frontend = frontend
        guard frontend.deviceID == VirtioDeviceID.console else {
            throw VirtioError("VIRTIO-LINK-2", "the link carries device ID \(frontend.deviceID), not a console (3)")
        }
        try frontend.probe(timeout: timeout)
        let features = try frontend.negotiate(wanted: VirtioConsole.featureSize)
        receive = try frontend.setUpQueue(VirtioConsole.receiveQueue, of: 2)
        transmit = try frontend.setUpQueue(VirtioConsole.transmitQueue, of: 2)
        transmitBuffer = try frontend.allocate(bufferSize)
        for _ in 0..<min(16, Int(receive.layout.size)) {
            let b = try frontend.allocate(bufferSize)
            if let head = receive.add([VirtioBuffer(offset: b, length: bufferSize, writable: true)]) { receiveBuffers[head] = b }
        }
        if features & VirtioConsole.featureSize != 0 {
            let c = try frontend.readConfig(offset: 0, count: 4)
            columns = UInt16(c[0]) | UInt16(c[1]) << 8
            rows = UInt16(c[2]) | UInt16(c[3]) << 8
        }
        try frontend.driverOK()
        frontend.kick(receive)
    }

    /// Sends `bytes` through the transmit queue, one buffer at a time, each waited for.
    public func write(_ bytes: [UInt8], timeout: Double = 10) throws {
        var sent = 0
        while sent < bytes.count {
            let n = min(bufferSize, bytes.count - sent)
            bytes[sent..<(sent + n)].withUnsafeBytes { frontend.endpoint.rw.copyIn($0, at: transmitBuffer) }
            transmit.add([VirtioBuffer(offset: transmitBuffer, length: n, writable: false)])
            frontend.kick(transmit)
            _ = try frontend.waitForUsed(transmit, timeout: timeout)
            sent += n
        }
    }

    /// The next bytes the back-end delivered (waits up to `timeout`); the buffer is re-posted.
    public func read(timeout: Double = 10) throws -> [UInt8] {
        let used = try frontend.waitForUsed(receive, timeout: timeout)
        let bytes = reclaim(used)
        frontend.kick(receive)
        return bytes
    }

    /// Everything delivered so far, without waiting (empty when nothing was).
    public func drain() -> [UInt8] {
        var out: [UInt8] = []
        var any = false
        while let used = receive.takeUsed() {
            out += reclaim(used)
            any = true
        }
        if any { frontend.kick(receive) }
        return out
    }

    /// The bytes of a used receive buffer; the buffer goes back on the ring.
    private func reclaim(_ used: (head: UInt16, written: UInt32)) -> [UInt8] {
        guard let b = receiveBuffers.removeValue(forKey: used.head) else { return [] }
        let bytes = frontend.endpoint.rw.bytes(at: b, count: min(Int(used.written), bufferSize))
        if let head = receive.add([VirtioBuffer(offset: b, length: bufferSize, writable: true)]) { receiveBuffers[head] = b }
        return bytes
    }

}
