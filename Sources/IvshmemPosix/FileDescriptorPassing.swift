#if canImport(Glibc)
import Glibc
#endif
import CIvshmemShim

/// One `recvmsg` worth of data and the descriptors that came with it.
public struct ReceivedMessage: Sendable {
    /// The bytes read (empty at end of file).
    public var bytes: [UInt8]
    /// The descriptors that arrived (close-on-exec). The caller owns and must close them.
    public var fds: [FileDescriptor]
    /// The sender attached more descriptors than `maxFDs` (MSG_CTRUNC): the ones that did fit
    /// were closed and ``fds`` is empty, so that nothing leaks; treat it as a protocol error.
    public var controlTruncated: Bool
}

/// The one place that builds and parses SCM_RIGHTS control messages.
extension UnixSocket {
    /// The most descriptors Linux passes in one message (SCM_MAX_FD).
    public static let maxFDsPerMessage = 253

    /// `sendmsg` of `bytes`, with `fds` attached (SCM_RIGHTS) to the first byte. Returns how
    /// many bytes were written (it may be fewer than `bytes.count` on a stream socket; the
    /// descriptors went with the first byte). `MSG_NOSIGNAL`: a closed peer gives
    /// `Errno.brokenPipe`, not SIGPIPE. A full socket buffer throws with `Errno.wouldBlock`,
    /// so that a caller with a non-blocking socket can queue and retry.
    public static func sendMessage(on socket: FileDescriptor, bytes: [UInt8], fds: [FileDescriptor] = []) throws -> Int {
        if bytes.isEmpty && !fds.isEmpty {
            return try sendMessage(on: socket, bytes: [0], fds: fds)  // descriptors need a byte
        }
        return try bytes.withUnsafeBytes { try sendMessage(on: socket, buffer: $0, fds: fds) }
    }

    /// ``sendMessage(on:bytes:fds:)`` from a buffer the caller owns (no copy).
    public static func sendMessage(on socket: FileDescriptor, buffer: UnsafeRawBufferPointer, fds: [FileDescriptor]) throws -> Int {
        precondition(fds.count <= maxFDsPerMessage, "at most \(maxFDsPerMessage) descriptors per message")
        precondition(!buffer.isEmpty || fds.isEmpty, "descriptors need at least one byte")
        // sendmsg does not write through msg_iov; the mutable pointer is only the C signature.
        var iov = iovec(iov_base: buffer.baseAddress.map { UnsafeMutableRawPointer(mutating: $0) }, iov_len: buffer.count)
        return try withUnsafeMutablePointer(to: &iov) { iovPointer in
            var header = msghdr()
            header.msg_iov = iovPointer
            header.msg_iovlen = 1
            if fds.isEmpty {
                return try retryingSystemCall("sendmsg", detail: socket.description) {
                    sendmsg(socket.rawValue, &header, Int32(MSG_NOSIGNAL))
                }
            }
            let dataLength = MemoryLayout<CInt>.size * fds.count
            let space = ivs_cmsg_space(dataLength)
            return try withUnsafeTemporaryAllocation(byteCount: space, alignment: MemoryLayout<cmsghdr>.alignment) { control in
                guard let controlBase = control.baseAddress else {
                    throw SystemCallError(call: "sendmsg", errno: .invalidArgument, detail: "no control buffer")
                }
                controlBase.initializeMemory(as: UInt8.self, repeating: 0, count: space)
                header.msg_control = controlBase
                header.msg_controllen = space
                guard let cmsg = ivs_cmsg_firsthdr(&header), let data = ivs_cmsg_data(cmsg) else {
                    throw SystemCallError(call: "sendmsg", errno: .invalidArgument, detail: "no room for SCM_RIGHTS")
                }
                cmsg.pointee.cmsg_level = SOL_SOCKET
                cmsg.pointee.cmsg_type = Int32(SCM_RIGHTS)
                cmsg.pointee.cmsg_len = ivs_cmsg_len(dataLength)
                let slot = UnsafeMutableRawPointer(data)
                for i in 0..<fds.count {
                    slot.storeBytes(of: fds[i].rawValue, toByteOffset: i * MemoryLayout<CInt>.size, as: CInt.self)
                }
                return try retryingSystemCall("sendmsg", detail: socket.description) {
                    sendmsg(socket.rawValue, &header, Int32(MSG_NOSIGNAL))
                }
            }
        }
    }

    /// `recvmsg` of at most `maxBytes` bytes and `maxFDs` descriptors (`MSG_CMSG_CLOEXEC`).
    ///
    /// On a stream socket, data without descriptors merges across messages: read exactly one
    /// header, then its body, so that each message's descriptors arrive with its own bytes.
    /// A non-blocking socket with nothing to read throws with `Errno.wouldBlock`.
    public static func receiveMessage(on socket: FileDescriptor, maxBytes: Int, maxFDs: Int = 1) throws -> ReceivedMessage {
        precondition(maxBytes > 0, "maxBytes must be positive")
        let fdCapacity = max(1, min(maxFDs, maxFDsPerMessage))
        var buffer = [UInt8](repeating: 0, count: maxBytes)
        let space = ivs_cmsg_space(MemoryLayout<CInt>.size * fdCapacity)
        let control = UnsafeMutableRawPointer.allocate(byteCount: space, alignment: MemoryLayout<cmsghdr>.alignment)
        defer { control.deallocate() }
        control.initializeMemory(as: UInt8.self, repeating: 0, count: space)

        var header = msghdr()
        let count: Int = try buffer.withUnsafeMutableBytes { data in
            var iov = iovec(iov_base: data.baseAddress, iov_len: data.count)
            return try withUnsafeMutablePointer(to: &iov) { iovPointer in
                header.msg_iov = iovPointer
                header.msg_iovlen = 1
                header.msg_control = control
                header.msg_controllen = space
                return try retryingSystemCall("recvmsg", detail: socket.description) {
                    recvmsg(socket.rawValue, &header, Int32(MSG_CMSG_CLOEXEC))
                }
            }
        }

        var fds: [FileDescriptor] = []
        var cursor = header.msg_controllen > 0 ? ivs_cmsg_firsthdr(&header) : nil
        while let cmsg = cursor {
            if cmsg.pointee.cmsg_level == SOL_SOCKET && cmsg.pointee.cmsg_type == Int32(SCM_RIGHTS),
               let data = ivs_cmsg_data(cmsg) {
                let headerLength = Int(ivs_cmsg_len(0))
                let payload = Int(cmsg.pointee.cmsg_len) - headerLength
                let n = max(0, payload / MemoryLayout<CInt>.size)
                let raw = UnsafeRawPointer(data)
                for i in 0..<n {
                    fds.append(FileDescriptor(rawValue: raw.loadUnaligned(fromByteOffset: i * MemoryLayout<CInt>.size, as: CInt.self)))
                }
            }
            cursor = ivs_cmsg_nxthdr(&header, cmsg)
        }

        let truncated = header.msg_flags & Int32(MSG_CTRUNC) != 0
        if truncated {
            for fd in fds { fd.closeQuietly() }
            fds = []
        }
        return ReceivedMessage(bytes: Array(buffer[0..<count]), fds: fds, controlTruncated: truncated)
    }
}
