#if canImport(Glibc)
import Glibc
#endif

/// An open file descriptor, as a type rather than a bare `Int32`.
///
/// It is a value: copying it does not duplicate the descriptor, and nothing closes it
/// implicitly. Owners call ``close()`` (or use ``closeAfter(_:)``) exactly once.
public struct FileDescriptor: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: CInt

    public init(rawValue: CInt) { self.rawValue = rawValue }

    public static let standardInput = FileDescriptor(rawValue: 0)
    public static let standardOutput = FileDescriptor(rawValue: 1)
    public static let standardError = FileDescriptor(rawValue: 2)

    public var description: String { "fd \(rawValue)" }

    // MARK: Opening and closing

    /// `open(2)` with `O_CLOEXEC` added to `flags`.
    public static func open(_ path: String, flags: CInt, mode: mode_t = 0o600) throws -> FileDescriptor {
        let fd = try retryingSystemCall("open", detail: path) { Glibc.open(path, flags | O_CLOEXEC, mode) }
        return FileDescriptor(rawValue: fd)
    }

    /// Closes the descriptor. Not retried on EINTR: on Linux the descriptor is released even
    /// when `close` reports EINTR, and a retry could close a descriptor another thread just got.
    public func close() throws {
        _ = try singleSystemCall("close", detail: description) { Glibc.close(rawValue) }
    }

    /// Closes the descriptor on a path where a failure has nothing left to report to.
    public func closeQuietly() {
        _ = Glibc.close(rawValue)
    }

    /// Runs `body`, then closes the descriptor whatever `body` did.
    public func closeAfter<R>(_ body: () throws -> R) rethrows -> R {
        defer { closeQuietly() }
        return try body()
    }

    /// `fcntl(F_DUPFD_CLOEXEC)`: a second descriptor for the same open file.
    public func duplicate() throws -> FileDescriptor {
        let fd = try retryingSystemCall("fcntl(F_DUPFD_CLOEXEC)", detail: description) { fcntl(rawValue, F_DUPFD_CLOEXEC, 0) }
        return FileDescriptor(rawValue: fd)
    }

    /// `dup2(2)`: makes `target` (e.g. standard error) refer to this descriptor's open file.
    public func duplicate(onto target: FileDescriptor) throws {
        _ = try retryingSystemCall("dup2", detail: "\(description) onto \(target.rawValue)") { dup2(rawValue, target.rawValue) }
    }

    // MARK: Reading and writing

    /// Reads at most `buffer.count` bytes; retries on EINTR. Returns 0 at end of file.
    /// A non-blocking descriptor with nothing to read throws `Errno.wouldBlock`.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try retryingSystemCall("read", detail: description) { Glibc.read(rawValue, buffer.baseAddress, buffer.count) }
    }

    /// Writes at most `buffer.count` bytes and returns how many were written.
    public func write(_ buffer: UnsafeRawBufferPointer) throws -> Int {
        try retryingSystemCall("write", detail: description) { Glibc.write(rawValue, buffer.baseAddress, buffer.count) }
    }

    /// Writes at most `bytes.count` bytes and returns how many were written.
    public func write(_ bytes: [UInt8]) throws -> Int {
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// Writes every byte, looping over short writes (for pipes, files and log lines).
    public func writeAll(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            offset += try bytes.withUnsafeBytes { try write(UnsafeRawBufferPointer(rebasing: $0[offset...])) }
        }
    }

    /// Writes every byte of `text` as UTF-8.
    public func writeAll(_ text: String) throws {
        try writeAll(Array(text.utf8))
    }

    /// Reads until end of file (for a child's output pipe, a small file).
    public func readAll() throws -> [UInt8] {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = try chunk.withUnsafeMutableBytes { try read(into: $0) }
            if n == 0 { return result }
            result.append(contentsOf: chunk[0..<n])
        }
    }

    // MARK: Properties

    /// Sets or clears `O_NONBLOCK`. The flag belongs to the open file description, so every
    /// process holding a copy of this descriptor sees the change.
    /// True when the descriptor is a terminal (isatty(3)): progress lines and prompts are for
    /// a person, pipes and files get only the records.
    public var isTerminal: Bool { Glibc.isatty(rawValue) == 1 }

    public func setNonBlocking(_ on: Bool) throws {
        let flags = try retryingSystemCall("fcntl(F_GETFL)", detail: description) { fcntl(rawValue, F_GETFL) }
        let wanted = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK
        if wanted != flags {
            _ = try retryingSystemCall("fcntl(F_SETFL)", detail: description) { fcntl(rawValue, F_SETFL, wanted) }
        }
    }

    /// Whether `O_NONBLOCK` is set.
    public func isNonBlocking() throws -> Bool {
        let flags = try retryingSystemCall("fcntl(F_GETFL)", detail: description) { fcntl(rawValue, F_GETFL) }
        return flags & O_NONBLOCK != 0
    }

    /// Whether `FD_CLOEXEC` is set.
    public func isCloseOnExec() throws -> Bool {
        let flags = try retryingSystemCall("fcntl(F_GETFD)", detail: description) { fcntl(rawValue, F_GETFD) }
        return flags & FD_CLOEXEC != 0
    }

    /// The size in bytes (`fstat`'s `st_size`).
    public func size() throws -> Int {
        try status().size
    }

    /// What `fstat` says about the open file.
    public func status() throws -> FileStatus {
        var st = stat()
        _ = try retryingSystemCall("fstat", detail: description) { fstat(rawValue, &st) }
        return FileStatus(st)
    }

    /// `ftruncate(2)`: sets the size (shared memory, a backing file).
    public func truncate(to size: Int) throws {
        _ = try retryingSystemCall("ftruncate", detail: "\(description), \(size)") { ftruncate(rawValue, off_t(size)) }
    }

    /// `fchmod(2)`: sets the permission bits.
    public func changeMode(_ mode: mode_t) throws {
        _ = try retryingSystemCall("fchmod", detail: "\(description), 0\(String(mode, radix: 8))") { fchmod(rawValue, mode) }
    }

    /// Waits until the descriptor is readable (or hung up), at most `timeoutMilliseconds`
    /// (-1: forever). Returns whether it became readable.
    public func waitReadable(timeoutMilliseconds: Int32) throws -> Bool {
        try pollEvents(POLLIN, timeoutMilliseconds: timeoutMilliseconds) != 0
    }

    /// Whether a write would not block now (`poll` for `POLLOUT`, at most `timeoutMilliseconds`).
    public func waitWritable(timeoutMilliseconds: Int32) throws -> Bool {
        try pollEvents(POLLOUT, timeoutMilliseconds: timeoutMilliseconds) & Int16(POLLOUT) != 0
    }

    /// One `poll(2)` on this descriptor: the returned events (0 on timeout). A descriptor that
    /// is not open (POLLNVAL) is an error to report, not "ready".
    private func pollEvents(_ events: Int32, timeoutMilliseconds: Int32) throws -> Int16 {
        var pfd = pollfd(fd: rawValue, events: Int16(events), revents: 0)
        let n = try retryingSystemCall("poll", detail: description) { poll(&pfd, 1, timeoutMilliseconds) }
        guard n > 0 else { return 0 }
        if pfd.revents & Int16(POLLNVAL) != 0 { throw SystemCallError(call: "poll", errno: .badFileDescriptor, detail: description) }
        return pfd.revents
    }

    /// The indices of `descriptors` that are readable, hung up or in error right now
    /// (`poll(2)` with a zero timeout, one call for all of them).
    public static func readyForReading(_ descriptors: [FileDescriptor]) throws -> [Int] {
        guard !descriptors.isEmpty else { return [] }
        var pfds = descriptors.map { pollfd(fd: $0.rawValue, events: Int16(POLLIN), revents: 0) }
        let n = try retryingSystemCall("poll", detail: "\(descriptors.count) descriptors") { poll(&pfds, nfds_t(pfds.count), 0) }
        guard n > 0 else { return [] }
        return pfds.indices.filter { pfds[$0].revents != 0 }
    }

    // MARK: Accounting

    /// How many descriptors this process has open (entries of `/proc/self/fd`, not counting
    /// the one used to list them). Tests compare it before and after to find leaks.
    public static func openCount() -> Int {
        guard let dir = opendir("/proc/self/fd") else { return -1 }
        defer { closedir(dir) }
        var count = 0
        while let entry = readdir(dir) {
            let isDot = withUnsafeBytes(of: entry.pointee.d_name) { raw in raw.first == UInt8(ascii: ".") }
            if !isDot { count += 1 }
        }
        return count - 1  // the directory stream's own descriptor
    }

    /// The descriptors this process has open (for a message naming a leak).
    public static func openDescriptors() -> [CInt] {
        guard let dir = opendir("/proc/self/fd") else { return [] }
        let own = dirfd(dir)
        defer { closedir(dir) }
        var result: [CInt] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw -> String in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if let n = CInt(name), n != own { result.append(n) }
        }
        return result.sorted()
    }
}

/// The parts of `struct stat` callers use.
public struct FileStatus: Sendable, Equatable {
    public var size: Int
    public var mode: mode_t
    /// The owner's user id.
    public var owner: uid_t
    public var isSocket: Bool { mode & S_IFMT == S_IFSOCK }
    public var isRegularFile: Bool { mode & S_IFMT == S_IFREG }
    public var isDirectory: Bool { mode & S_IFMT == S_IFDIR }
    /// The permission bits (`mode & 0o7777`).
    public var permissions: mode_t { mode & 0o7777 }

    init(_ st: stat) {
        size = Int(st.st_size)
        mode = st.st_mode
        owner = st.st_uid
    }
}
