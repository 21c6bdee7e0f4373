import IvshmemModel
import IvshmemPosix
import IvshmemSync

/// What the endpoint has served so far.
public struct ProxyStatistics: Sendable, Equatable {
    /// Messages handled, by command.
    public var messages: [ProxyCommand: Int] = [:]
    /// INTx pulses the device produced (IRQ-INTX-1).
    public var intxPulses = 0
    /// Times the INTx irqfd was signalled (the line asserted).
    public var irqfdAssertions = 0
    /// Resample notifications: the guest completed the interrupt and the line was released.
    public var resamples = 0
    /// Pulses that arrived before QEMU sent its irqfd: nobody could be told.
    public var pulsesWithoutIRQFD = 0
    /// BAR accesses at addresses no BAR of the device decodes (read all-ones, writes dropped).
    public var undecodedAccesses = 0

    public var total: Int { messages.values.reduce(0, +) }
}

/// The far end of QEMU's multi-process PCI proxy for one ivshmem v2 function: every config and
/// BAR access of the guest arrives here as a message and is carried out by the device model
/// through its public interface (so driver checking records what the guest's firmware and
/// kernel do), and the device's INTx pulses go back through the irqfd QEMU hands over.
///
/// The device must be in INTx mode: the proxy forwards no MSI-X (IRQ-VEC-1 allows INTx where
/// the platform has no MSI-X). Under KVM the irqfd raises the guest's interrupt line and the
/// resample eventfd tells when the guest has completed it; the line is asserted once per
/// completion, and a pulse that arrives while it is asserted re-asserts it after the
/// resample. Under TCG QEMU does not wire the irqfd at all, so the guest sees no interrupt.
///
/// ``serve()`` runs on the caller's thread until QEMU closes the link or sends a message QEMU
/// 7.2 never sends; then it closes the socket (QEMU sees the link fail) and every descriptor
/// QEMU passed.
public final class QEMUProxyEndpoint: InterruptSink, @unchecked Sendable {
    public let device: IvshmemDevice
    private let socket: FileDescriptor
    private let reader: ProxyMessageReader

    private struct Line {
        var irqfd: EventFD?
        var resample: EventFD?
        var asserted = false
        var pulseWhileAsserted = false
        var stats = ProxyStatistics()
        var closed = false
    }
    private let line = Locked(Line())
    private let tracer: Locked<(@Sendable (String) -> Void)?> = Locked(nil)

    /// Called on the serving thread with one line per message handled (command, address,
    /// size, value, answer), e.g. for `ivshmem2 qemu --trace`.
    public func onMessage(_ handler: (@Sendable (String) -> Void)?) { tracer.withLock { $0 = handler } }

    /// Takes ownership of `socket` (one end of the stream socket QEMU got as `fd=`) and
    /// becomes the device's interrupt sink.
    public init(device: IvshmemDevice, socket: FileDescriptor, completionTimeout: Double = 10) {
        self.device = device
        self.socket = socket
        reader = ProxyMessageReader(socket: socket, completionTimeout: completionTimeout)
        device.interruptSink = self
    }

    deinit { closeLink() }

    public var statistics: ProxyStatistics { line.withLock { $0.stats } }

    /// Serves messages until QEMU closes the link (nil) or the link fails (the error).
    /// Closes the link either way.
    public func serve() -> ProxyLinkError? {
        defer { closeLink() }
        let epoll: Epoll
        do {
            epoll = try Epoll(maxEventsPerWait: 4)
            try epoll.add(socket, events: [.readable], token: 0)
        } catch {
            return ProxyLinkError(.system, command: nil, offset: 0, "setting up the event loop: \(error)")
        }
        defer { epoll.close() }
        var failure: ProxyLinkError?
        var open = true
        while open && failure == nil {
            do {
                try epoll.wait(timeoutMilliseconds: -1) { token, _ in
                    guard open, failure == nil else { return }
                    if token == 1 {
                        resampled()
                        return
                    }
                    guard let message = try reader.next() else {
                        open = false
                        return
                    }
                    if let resample = try handle(message) {
                        try epoll.add(resample.fd, events: [.readable], token: 1)
                    }
                }
            } catch let e as ProxyLinkError {
                failure = e
            } catch {
                failure = ProxyLinkError(.system, command: nil, offset: reader.offset, "\(error)")
            }
        }
        return failure
    }

    // MARK: messages

    /// Carries out one message and answers it when QEMU waits for an answer. Returns the
    /// resample eventfd when the message installed one.
    private func handle(_ m: ProxyMessage) throws -> EventFD? {
        line.withLock { $0.stats.messages[m.command, default: 0] += 1 }
        let trace = tracer.withLock { $0 }
        func bad(_ text: String) -> ProxyLinkError {
            ProxyLinkError(.badField, command: m.command.rawValue, offset: m.offset, text)
        }
        switch m.command {
        case .configRead, .configWrite:
            let access = ProxyConfigAccess(payload: m.payload)
            guard [1, 2, 4].contains(access.length) else { throw bad("config access of \(access.length) bytes (1, 2 or 4)") }
            guard UInt64(access.address) + UInt64(access.length) <= 256 else {
                throw bad("config access at 0x\(String(access.address, radix: 16)) beyond the 256-byte config space of a conventional function")
            }
            if m.command == .configRead {
                let value = device.configRead(offset: Int(access.address), size: Int(access.length))
                trace?("\(m.command) 0x\(hex(access.address))/\(access.length) -> 0x\(hex(value))")
                try reply(UInt64(value), to: m)
            } else {
                trace?("\(m.command) 0x\(hex(access.address))/\(access.length) = 0x\(hex(access.value))")
                device.configWrite(offset: Int(access.address), size: Int(access.length), value: access.value)
                try reply(0, to: m)
            }
        case .barRead, .barWrite:
            let access = ProxyBarAccess(payload: m.payload)
            guard [1, 2, 4, 8].contains(access.size) else { throw bad("BAR access of \(access.size) bytes (1, 2, 4 or 8)") }
            let size = Int(access.size)
            let window = device.decodeWindows.first { $0.isIO != access.memory && $0.offset(of: access.address) != nil }
            if m.command == .barRead {
                var value = size == 8 ? UInt64.max : (1 << UInt64(size * 8)) - 1
                if let w = window, let off = w.offset(of: access.address) {
                    value = device.barRead(w.bar, offset: off, size: size)
                } else {
                    line.withLock { $0.stats.undecodedAccesses += 1 }
                }
                trace?("\(m.command) \(location(window, access)) /\(size) -> 0x\(hex(value))")
                try reply(value, to: m)
            } else {
                trace?("\(m.command) \(location(window, access)) /\(size) = 0x\(hex(access.value))")
                if let w = window, let off = w.offset(of: access.address) {
                    device.barWrite(w.bar, offset: off, size: size, value: access.value)
                } else {
                    line.withLock { $0.stats.undecodedAccesses += 1 }
                }
                try reply(0, to: m)
            }
        case .deviceReset:
            trace?("\(m.command)")
            device.reset()
            line.withLock { $0.asserted = false; $0.pulseWhileAsserted = false }
            try reply(0, to: m)
        case .setIRQFD:
            for fd in m.fds where !EventFD.isEventFD(fd) {
                for f in m.fds { f.closeQuietly() }
                throw ProxyLinkError(.badDescriptors, command: m.command.rawValue, offset: m.offset, "\(fd) is not an eventfd")
            }
            let (irqfd, resample) = (EventFD(fd: m.fds[0]), EventFD(fd: m.fds[1]))
            let old = line.withLock { l -> [EventFD] in
                defer { l.irqfd = irqfd; l.resample = resample; l.asserted = false; l.pulseWhileAsserted = false }
                return [l.irqfd, l.resample].compactMap { $0 }
            }
            for e in old { e.close() }  // a second SET_IRQFD replaces the first (the old fds leave epoll when closed)
            trace?("\(m.command) irqfd \(irqfd.fd.rawValue) resample \(resample.fd.rawValue)")
            return resample
        case .syncSystemMemory:
            // Guest RAM regions for DMA; this device does no DMA: accepted, descriptors closed.
            trace?("\(m.command) \(m.fds.count) region(s)")
            for fd in m.fds { fd.closeQuietly() }
        case .ret:
            break  // rejected by the reader
        }
        return nil
    }

    private func hex<T: BinaryInteger>(_ v: T) -> String { String(v, radix: 16) }

    /// "BAR2+0x10" for a decoded access, the raw address otherwise.
    private func location(_ window: DecodeWindow?, _ access: ProxyBarAccess) -> String {
        guard let w = window, let off = w.offset(of: access.address) else {
            return "\(access.memory ? "memory" : "port") 0x\(hex(access.address)) (not decoded)"
        }
        return "BAR\(w.bar)+0x\(hex(off))"
    }

    private func reply(_ value: UInt64, to m: ProxyMessage) throws {
        let bytes = ProxyFrame.reply(value)
        var sent = 0
        while sent < bytes.count {
            do { sent += try UnixSocket.sendMessage(on: socket, bytes: Array(bytes[sent...])) } catch let e as SystemCallError {
                throw ProxyLinkError(.system, command: m.command.rawValue, offset: m.offset, "answering: \(e)")
            }
        }
    }

    // MARK: INTx through the irqfd

    /// IRQ-INTX-1: a pulse asserts the line through the irqfd, unless it is still asserted
    /// (the guest has not completed the last interrupt): then it is asserted again after the
    /// resample, so no pulse is lost and none is delivered twice.
    public func intxEdge(from device: IvshmemDevice, pin: UInt8) {
        line.withLock { l in
            guard !l.closed else { return }
            l.stats.intxPulses += 1
            guard let irqfd = l.irqfd else {
                l.stats.pulsesWithoutIRQFD += 1
                return
            }
            if l.asserted {
                l.pulseWhileAsserted = true
            } else if (try? irqfd.trySignal(1)) == true {
                l.asserted = true
                l.stats.irqfdAssertions += 1
            }
        }
    }

    /// The device never uses MSI-X here (INTx mode); nothing to forward.
    public func msixMessage(from device: IvshmemDevice, vector: Int, address: UInt64, data: UInt32) {}

    private func resampled() {
        line.withLock { l in
            guard let resample = l.resample else { return }
            _ = try? resample.consume()
            l.stats.resamples += 1
            l.asserted = false
            if l.pulseWhileAsserted, let irqfd = l.irqfd, (try? irqfd.trySignal(1)) == true {
                l.pulseWhileAsserted = false
                l.asserted = true
                l.stats.irqfdAssertions += 1
            }
        }
    }

    private func closeLink() {
        let fds = line.withLock { l -> [FileDescriptor] in
            guard !l.closed else { return [] }
            l.closed = true
            defer { l.irqfd = nil; l.resample = nil }
            return [socket] + [l.irqfd?.fd, l.resample?.fd].compactMap { $0 }
        }
        for fd in fds { fd.closeQuietly() }
    }
}
