import IvshmemPosix
import IvshmemWire

/// Reads exactly one message from a blocking socket: the 8-byte header, then its body, keeping
/// every fd that arrived with either part (WIRE-GEN-3). SOCK_STREAM does not merge data across
/// an fd-carrying message, but fd-less data may arrive merged, so header and body are read
/// separately.
struct BlockingMessageRead {
    var header: MessageHeader
    var body: [UInt8]
    var fds: [FileDescriptor]

    /// - Parameters:
    ///   - deadline: `Monotonic.now()` value after which waiting fails with `.timeout`.
    ///   - timeout: the whole allowance the deadline was computed from (for the error message).
    static func read(from socket: FileDescriptor, during what: String, maxLength: UInt32 = WireConstants.maxMessageLength,
                     deadline: Double, timeout: Double) throws -> BlockingMessageRead {
        var fds: [FileDescriptor] = []
        do {
            let head = try readExactly(socket, WireConstants.headerSize, fds: &fds, during: what, deadline: deadline, timeout: timeout)
            let header: MessageHeader
            do { header = try MessageHeader(parsing: head) } catch { throw AttachError.wire(error, during: what) }
            guard header.length >= UInt32(WireConstants.headerSize) else {
                throw AttachError.wire(.lengthBelowHeader(type: header.type, length: header.length), during: what)
            }
            guard header.length <= maxLength else {
                throw AttachError.wire(.lengthTooLarge(type: header.type, length: header.length, limit: maxLength), during: what)
            }
            let body = try readExactly(socket, header.bodyLength, fds: &fds, during: what, deadline: deadline, timeout: timeout)
            return BlockingMessageRead(header: header, body: body, fds: fds)
        } catch {
            for fd in fds { fd.closeQuietly() }
            throw error
        }
    }

    private static func readExactly(_ socket: FileDescriptor, _ count: Int, fds: inout [FileDescriptor], during what: String, deadline: Double, timeout: Double) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        while out.count < count {
            // A socket that accepts but never speaks (a stuck server, not an ivshmem server)
            // must not hang the caller.
            let left = deadline - Monotonic.now()
            let ready: Bool
            do { ready = left > 0 ? try socket.waitReadable(timeoutMilliseconds: Int32(min(left, 60) * 1000) + 1) : false } catch let e as SystemCallError {
                throw AttachError.system(e, during: what)
            }
            guard ready else { throw AttachError.timeout(during: what, seconds: timeout) }
            let m: ReceivedMessage
            do { m = try UnixSocket.receiveMessage(on: socket, maxBytes: count - out.count, maxFDs: 4) } catch let e as SystemCallError {
                throw AttachError.system(e, during: what)
            }
            fds += m.fds
            if m.bytes.isEmpty { throw AttachError.serverClosed(during: what) }
            out += m.bytes
        }
        return out
    }
}
