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

    static func read(from socket: FileDescriptor, during what: String, maxLength: UInt32 = WireConstants.maxMessageLength) throws -> BlockingMessageRead {
        var fds: [FileDescriptor] = []
        do {
            let head = try readExactly(socket, WireConstants.headerSize, fds: &fds, during: what)
            let header: MessageHeader
            do { header = try MessageHeader(parsing: head) } catch { throw AttachError.wire(error, during: what) }
            guard header.length >= UInt32(WireConstants.headerSize) else {
                throw AttachError.wire(.lengthBelowHeader(type: header.type, length: header.length), during: what)
            }
            guard header.length <= maxLength else {
                throw AttachError.wire(.lengthTooLarge(type: header.type, length: header.length, limit: maxLength), during: what)
            }
            let body = try readExactly(socket, header.bodyLength, fds: &fds, during: what)
            return BlockingMessageRead(header: header, body: body, fds: fds)
        } catch {
            for fd in fds { fd.closeQuietly() }
            throw error
        }
    }

    private static func readExactly(_ socket: FileDescriptor, _ count: Int, fds: inout [FileDescriptor], during what: String) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        while out.count < count {
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
