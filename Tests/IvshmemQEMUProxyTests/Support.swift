#if canImport(Glibc)
import Glibc
#endif
import IvshmemModel
import IvshmemPosix
import IvshmemQEMUProxy
import IvshmemSync

/// Plays QEMU's side of the proxy link against a ``QEMUProxyEndpoint`` serving on its own
/// thread: sends messages as `x-pci-proxy-dev` frames them and reads the RET answers.
final class FakeQEMU: @unchecked Sendable {
    let device: IvshmemDevice
    let endpoint: QEMUProxyEndpoint
    let socket: FileDescriptor
    private let result = Locked<(done: Bool, error: ProxyLinkError?)>((false, nil))
    private var thread = pthread_t()

    /// A spec-profile device in INTx mode on pin A, as `ivshmem2 qemu` builds it.
    init(maxPeers: UInt32 = 2, id: UInt32 = 0) throws {
        let fabric = try LocalFabric(template: DeviceConfiguration(id: id, maxPeers: maxPeers, interrupts: .intx(pin: 1)))
        device = try fabric.addDevice(id: id)
        let (ours, theirs) = try UnixSocket.pair()
        socket = theirs
        endpoint = QEMUProxyEndpoint(device: device, socket: ours, completionTimeout: 2)
        let box = Unmanaged.passRetained(self)
        pthread_create(&thread, nil, { raw in
            let fake = Unmanaged<FakeQEMU>.fromOpaque(raw!).takeRetainedValue()
            let error = fake.endpoint.serve()
            fake.result.withLock { $0 = (true, error) }
            return nil
        }, box.toOpaque())
    }

    /// Sends one message: header, payload, descriptors with the header's first byte.
    func send(_ command: Int32, size: UInt64? = nil, payload: [UInt8] = [], fds: [FileDescriptor] = []) throws {
        let bytes = ProxyFrame.header(command: command, size: size ?? UInt64(payload.count)) + payload
        var sent = try UnixSocket.sendMessage(on: socket, bytes: bytes, fds: fds)
        while sent < bytes.count { sent += try UnixSocket.sendMessage(on: socket, bytes: Array(bytes[sent...])) }
    }

    /// Reads a RET and returns its value; nil when the link closed or the answer is not a RET.
    func readReply(timeout: Double = 5) throws -> UInt64? {
        var bytes: [UInt8] = []
        let deadline = Monotonic.now() + timeout
        while bytes.count < 24 {
            guard try socket.waitReadable(timeoutMilliseconds: Int32(max(1, (deadline - Monotonic.now()) * 1000))) else { return nil }
            let got = try UnixSocket.receiveMessage(on: socket, maxBytes: 24 - bytes.count)
            if got.bytes.isEmpty { return nil }
            bytes += got.bytes
        }
        guard bytes[0..<4] == [1, 0, 0, 0], bytes[8..<16] == [8, 0, 0, 0, 0, 0, 0, 0] else { return nil }
        return (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[16 + $1]) << (8 * UInt64($1)) }
    }

    func configRead(_ address: UInt32, _ length: Int32) throws -> UInt64? {
        try send(ProxyCommand.configRead.rawValue, payload: ProxyConfigAccess(address: address, length: length).payload)
        return try readReply()
    }

    @discardableResult
    func configWrite(_ address: UInt32, _ length: Int32, _ value: UInt32) throws -> UInt64? {
        try send(ProxyCommand.configWrite.rawValue, payload: ProxyConfigAccess(address: address, value: value, length: length).payload)
        return try readReply()
    }

    func barRead(_ address: UInt64, _ size: UInt32, memory: Bool = true) throws -> UInt64? {
        try send(ProxyCommand.barRead.rawValue, payload: ProxyBarAccess(address: address, size: size, memory: memory).payload)
        return try readReply()
    }

    @discardableResult
    func barWrite(_ address: UInt64, _ size: UInt32, _ value: UInt64, memory: Bool = true) throws -> UInt64? {
        try send(ProxyCommand.barWrite.rawValue, payload: ProxyBarAccess(address: address, value: value, size: size, memory: memory).payload)
        return try readReply()
    }

    /// What firmware does before a guest uses the device: BAR0 and BAR2 placed, memory decode on.
    static let bar0: UInt64 = 0xFEBF_E000
    static let bar2: UInt64 = 0xFEA0_0000
    func program() throws {
        try configWrite(0x10, 4, UInt32(Self.bar0))
        try configWrite(0x18, 4, UInt32(Self.bar2))
        try configWrite(0x1C, 4, 0)
        try configWrite(0x04, 2, 0x0002)
    }

    /// Closes QEMU's end (as when QEMU exits) unless already closed, and waits for the endpoint.
    func finish(timeout: Double = 5) -> (ended: Bool, error: ProxyLinkError?) {
        socket.closeQuietly()
        return waitForEnd(timeout: timeout)
    }

    /// Waits for the endpoint to stop by itself (a malformed message), without closing our end.
    func waitForEnd(timeout: Double = 5) -> (ended: Bool, error: ProxyLinkError?) {
        let ended = Monotonic.poll(timeout: timeout) { self.result.withLock { $0.done } }
        if ended { pthread_join(thread, nil) }
        return (ended, result.withLock { $0.error })
    }

    /// Whether our end sees end of file: the endpoint closed the link.
    func linkClosedByEndpoint(timeout: Double = 5) throws -> Bool { try Self.sawEndOfFile(socket, timeout: timeout) }

    /// Whether `fd` (a socket) sees end of file or a reset within `timeout`: every copy of its
    /// partner was closed. Unread bytes are skipped.
    static func sawEndOfFile(_ fd: FileDescriptor, timeout: Double = 5) throws -> Bool {
        let deadline = Monotonic.now() + timeout
        while try fd.waitReadable(timeoutMilliseconds: Int32(max(1, (deadline - Monotonic.now()) * 1000))) {
            do {
                if try UnixSocket.receiveMessage(on: fd, maxBytes: 256).bytes.isEmpty { return true }
            } catch let e as SystemCallError where e.errno == Errno(rawValue: ECONNRESET) {
                return true
            }
        }
        return false
    }

    /// `n` socket ends to pass as descriptors, and the partner of each: when every copy of a
    /// passed end is closed, its partner sees end of file (how a test sees that the endpoint
    /// closed what it received, without counting the process's descriptors).
    static func descriptorProbes(_ n: Int) throws -> (passed: [FileDescriptor], partners: [FileDescriptor]) {
        var passed: [FileDescriptor] = [], partners: [FileDescriptor] = []
        for _ in 0..<n {
            let (a, b) = try UnixSocket.pair()
            passed.append(a)
            partners.append(b)
        }
        return (passed, partners)
    }
}
