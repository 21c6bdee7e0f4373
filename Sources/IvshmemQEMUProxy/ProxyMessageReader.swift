import IvshmemPosix

/// One message read off the proxy link, checked against what QEMU 7.2 sends.
public struct ProxyMessage: Sendable {
    public var command: ProxyCommand
    public var payload: [UInt8]
    /// Descriptors that came with it; the receiver owns them.
    public var fds: [FileDescriptor]
    /// Stream offset of its header.
    public var offset: UInt64
}

/// Reads whole messages from the (blocking) proxy socket: the header with its descriptors, then
/// exactly its payload. A message must be complete within `completionTimeout` seconds of its
/// first byte, so that a stalled or malicious sender cannot hang the endpoint. On every error
/// the descriptors read so far are closed.
final class ProxyMessageReader {
    let socket: FileDescriptor
    let completionTimeout: Double
    /// Bytes consumed so far: the offset of the next message.
    private(set) var offset: UInt64 = 0

    init(socket: FileDescriptor, completionTimeout: Double = 10) {
        self.socket = socket
        self.completionTimeout = completionTimeout
    }

    /// The next message, or nil when the stream ended cleanly between two messages.
    func next() throws -> ProxyMessage? {
        let start = offset
        var fds: [FileDescriptor] = []
        var handedOver = false
        defer { if !handedOver { for fd in fds { fd.closeQuietly() } } }
        let deadline = Monotonic.now() + completionTimeout

        var overflow = false
        guard let header = try read(ProxyFrame.headerSize, fds: &fds, overflow: &overflow, start: start, command: nil, deadline: deadline, allowEOF: true) else {
            return nil
        }
        let raw = Int32(bitPattern: UInt32(ProxyFrame.load(header, at: 0, width: 4)))
        let size = ProxyFrame.load(header, at: 8, width: 8)
        func fail(_ kind: ProxyLinkError.Kind, _ text: String) -> ProxyLinkError {
            ProxyLinkError(kind, command: raw, offset: start, text)
        }
        guard let command = ProxyCommand(rawValue: raw), command != .ret else {
            throw fail(.unknownCommand, raw == ProxyCommand.ret.rawValue
                ? "QEMU sent a RET, but only the endpoint answers on this link"
                : "unknown command (QEMU 7.2 defines 0…7)")
        }
        guard !overflow else {
            throw fail(.badDescriptors, "more descriptors than the \(ProxyFrame.maxDescriptors) a message may carry")
        }
        guard size == UInt64(command.payloadSize) else {
            throw fail(.badSize, "payload size \(size), \(command) carries \(command.payloadSize) bytes")
        }
        var payload: [UInt8] = []
        if size > 0 {
            guard let body = try read(Int(size), fds: &fds, overflow: &overflow, start: start, command: raw, deadline: deadline, allowEOF: false) else {
                throw fail(.truncated, "stream ended before the payload")
            }
            payload = body
        }
        guard !overflow, command.descriptorRange.contains(fds.count) else {
            throw fail(.badDescriptors, overflow ? "descriptors arrived with the payload" : "\(fds.count) descriptor(s), \(command) carries \(command.descriptorRange.lowerBound == command.descriptorRange.upperBound ? "\(command.descriptorRange.lowerBound)" : "\(command.descriptorRange.lowerBound)…\(command.descriptorRange.upperBound)")")
        }
        handedOver = true
        return ProxyMessage(command: command, payload: payload, fds: fds, offset: start)
    }

    /// Reads exactly `count` bytes, collecting descriptors; sets `overflow` when more than a
    /// message may carry arrived (those are closed, so the header can still be read and named).
    /// nil only when `allowEOF` and the stream ended before the first byte.
    private func read(_ count: Int, fds: inout [FileDescriptor], overflow: inout Bool, start: UInt64, command: Int32?, deadline: Double, allowEOF: Bool) throws -> [UInt8]? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        while bytes.count < count {
            if !(allowEOF && bytes.isEmpty) {
                // Inside a message: wait for the rest, but not forever.
                let left = deadline - Monotonic.now()
                let ready: Bool
                do { ready = left > 0 ? try socket.waitReadable(timeoutMilliseconds: Int32(min(left * 1000, 3_600_000)) + 1) : false } catch let e as SystemCallError {
                    throw ProxyLinkError(.system, command: command, offset: start, "\(e)")
                }
                guard ready else {
                    throw ProxyLinkError(.truncated, command: command, offset: start, "message incomplete after \(completionTimeout) s (\(offset - start) bytes read)")
                }
            }
            let got: ReceivedMessage
            do { got = try UnixSocket.receiveMessage(on: socket, maxBytes: count - bytes.count, maxFDs: ProxyFrame.maxDescriptors + 1) } catch let e as SystemCallError {
                // QEMU exiting with replies of ours still unread in its socket resets the
                // connection instead of closing it: between messages that is the end of the
                // stream, like EOF (found under ThreadSanitizer's slower timing).
                if e.errno == .connectionReset && allowEOF && bytes.isEmpty { return nil }
                throw ProxyLinkError(.system, command: command, offset: start, "\(e)")
            }
            fds += got.fds
            if got.controlTruncated || fds.count > ProxyFrame.maxDescriptors || (!got.fds.isEmpty && command != nil) {
                overflow = true  // too many, or descriptors with the payload (QEMU sends them with the header)
            }
            if got.bytes.isEmpty {
                if allowEOF && bytes.isEmpty { return nil }
                throw ProxyLinkError(.truncated, command: command, offset: start, "stream ended \(offset - start) bytes into the message")
            }
            bytes += got.bytes
            offset += UInt64(got.bytes.count)
        }
        return bytes
    }
}
