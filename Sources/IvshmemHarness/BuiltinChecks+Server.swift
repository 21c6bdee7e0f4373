import Foundation
import IvshmemPosix
import IvshmemServer
import IvshmemSpec
import IvshmemWire
import IvshmemSync
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Support: the `ivshmem2 server` program as a child process

/// One `ivshmem2 server -F …` child with its own directory; `stop()` ends it and removes
/// everything it may have left.
final class ServerChild: @unchecked Sendable {
    let process: SpawnedProcess
    let directory: String
    let socketPath: String
    let shmName: String?
    private(set) var status: ExitStatus?
    private var stderrFD: FileDescriptor?

    static func executable() throws -> String {
        // Ourselves, or next to a test bundle first: a sanitizer build (`--scratch-path
        // .build-tsan`) spawns its own instrumented ivshmem2, not the one of the normal build.
        if let own = SpawnedProcess.siblingExecutable(named: "ivshmem2") { return own }
        for candidate in [".build/debug/ivshmem2", ".build/release/ivshmem2"] where (try? FileSystem.status(ofPath: candidate)) != nil {
            return candidate
        }
        throw CheckFailure(expected: "the ivshmem2 executable (to spawn `ivshmem2 server`)", actual: "running as \((try? SpawnedProcess.currentExecutablePath()) ?? "?")")
    }

    private static let counter = Locked(0)
    /// A POSIX shared-memory name unique to this process and call.
    static func uniqueShmName() -> String {
        let n = counter.withLock { c -> Int in c += 1; return c }
        return "ivshmem2-check-\(getpid())-\(n)"
    }

    /// Starts `ivshmem2 server -F -S <dir>/s.sock <arguments>` (the socket option is left out
    /// when `socketPath` is given explicitly, or when `defaultSocket` is set).
    init(arguments: [String], socketPath explicitPath: String? = nil, defaultSocket: Bool = false, shmName: String? = nil, captureStderr: Bool = false) throws {
        directory = try FileSystem.makeTemporaryDirectory(template: "/tmp/ivshmem2-srvcheck.XXXXXX")
        socketPath = defaultSocket ? ServerConfiguration.defaultSocketPath : (explicitPath ?? directory + "/s.sock")
        self.shmName = shmName
        var args = ["server", "-F"]
        if !defaultSocket { args += ["-S", socketPath] }
        args += arguments
        do {
            process = try SpawnedProcess.spawn(executable: try Self.executable(), arguments: args, standardInput: .null, standardOutput: .null,
                                               standardError: captureStderr ? .pipe : .null)
        } catch {
            FileSystem.removeDirectoryTree(directory)
            throw error
        }
        stderrFD = process.standardError
    }

    deinit { stop() }

    /// Waits until the socket file exists (or the child exits). It does not connect: a probe
    /// connection would be admitted as a peer and take ID 0 for a moment.
    func waitListening(timeout: Double = 5) throws {
        let listening = try Monotonic.poll(timeout: timeout, interval: 0.002) {
            if status == nil, let s = try? process.waitWithTimeout(seconds: 0) { status = s }
            if let s = status { throw CheckFailure(expected: "the server to start and listen", actual: "it ended: \(s); \(errorOutput())") }
            return (try? FileSystem.status(ofPath: socketPath))??.isSocket == true
        }
        if !listening { throw CheckFailure(expected: "the server to listen on \(socketPath) within \(timeout) s", actual: "no socket file") }
    }

    /// A raw client, retrying while the socket is bound but not yet listening.
    func connect(timeout: Double = 5) throws -> FDWireClient {
        var client: FDWireClient?
        var refusal: Error?
        _ = try Monotonic.poll(timeout: timeout, interval: 0.002) {
            do { client = try FDWireClient(path: socketPath); return true } catch let e as SystemCallError where e.errno == .connectionRefused || e.errno == .noEntry {
                refusal = e
                if status == nil, let s = try? process.waitWithTimeout(seconds: 0) { status = s }
                if let s = status { throw CheckFailure(expected: "the server to accept a connection", actual: "it ended: \(s)") }
                return false
            }
        }
        guard let client else { throw refusal ?? CheckFailure(expected: "a connection within \(timeout) s", actual: "none") }
        return client
    }

    /// Waits for the child to exit by itself.
    func waitExit(timeout: Double = 5) -> ExitStatus? {
        if status == nil { status = try? process.waitWithTimeout(seconds: timeout) }
        return status
    }

    private var errorText: String?
    /// What the child wrote to stderr (only with `captureStderr`, after it exited).
    func errorOutput() -> String {
        if let t = errorText { return t }
        guard let fd = stderrFD, status != nil else { return "" }
        let bytes = (try? fd.readAll()) ?? []
        fd.closeQuietly()
        stderrFD = nil
        errorText = String(decoding: bytes, as: UTF8.self)
        return errorText!
    }

    /// Sends `sig` and waits for the exit.
    func terminate(_ sig: Int32 = SIGTERM, timeout: Double = 5) -> ExitStatus? {
        if status == nil {
            try? process.signal(sig)
            status = try? process.waitWithTimeout(seconds: timeout)
        }
        return status
    }

    /// The number of descriptors the child has open.
    func openDescriptorCount() -> Int { ((try? FileSystem.listDirectory("/proc/\(process.pid)/fd")) ?? []).count }

    /// Ends the child (SIGTERM, then SIGKILL), reaps it, removes its files. Idempotent.
    func stop() {
        if status == nil {
            try? process.signal(SIGTERM)
            status = try? process.waitWithTimeout(seconds: 3)
            if status == nil {
                try? process.signal(SIGKILL)
                status = try? process.wait()
            }
        }
        _ = errorOutput()
        stderrFD?.closeQuietly()
        stderrFD = nil
        if let n = shmName { try? IvshmemPosix.SharedMemory.unlinkNamed(n) }
        FileSystem.removeDirectoryTree(directory)
    }
}

enum ServerCheckSupport {
    /// Runs `ivshmem2 server` with options it must refuse: non-zero exit, a message naming
    /// one of `naming`, and no socket left behind.
    /// Runs `ivshmem2 server` with options (or in a place) it must refuse: non-zero exit, a
    /// message naming one of `naming` and all of `alsoNaming`, and no socket left behind.
    static func expectRefusal(_ ctx: CheckContext, _ arguments: [String], socketPath: String? = nil, naming: [String], alsoNaming: [String] = [],
                              requirement: String) throws {
        let child = try ServerChild(arguments: arguments, socketPath: socketPath, captureStderr: true)
        defer { child.stop() }
        guard let status = child.waitExit(timeout: 5) else {
            throw CheckFailure(expected: "`ivshmem2 server \(arguments.joined(separator: " "))` to refuse to start (\(requirement))", actual: "still running after 5 s")
        }
        let message = child.errorOutput()
        ctx.trace.record("check", .lifecycle, detail: "server \(arguments.joined(separator: " ")): \(status): \(message.split(separator: "\n").first ?? "")")
        try require(status != .exited(0), "a non-zero exit status for \(arguments.joined(separator: " ")) (\(requirement))", "\(status)")
        try require(naming.contains { message.contains($0) } && alsoNaming.allSatisfy { message.contains($0) },
                    "a message naming \(naming.joined(separator: " or "))\(alsoNaming.map { " and \($0)" }.joined()) for \(arguments.joined(separator: " "))",
                    message.isEmpty ? "no message" : message)
        try require((try? FileSystem.status(ofPath: child.socketPath)) == nil, "no socket created by a refused configuration", "\(child.socketPath) exists")
    }

    /// Runs `ivshmem2 server` with options it must accept: it listens and sends INIT.
    static func expectAccepted(_ ctx: CheckContext, _ arguments: [String], socketPath: String? = nil, requirement: String,
                               _ body: (ServerChild, FDWireClient) throws -> Void = { _, _ in }) throws {
        let child = try ServerChild(arguments: arguments, socketPath: socketPath, captureStderr: true)
        defer { child.stop() }
        do { try child.waitListening() } catch let f as CheckFailure {
            throw CheckFailure(expected: "`ivshmem2 server \(arguments.joined(separator: " "))` to start (\(requirement))", actual: f.actual)
        }
        let c = try child.connect()
        defer { c.close() }
        guard let m = try c.next(timeout: 5), m.header.type == 0 else {
            throw CheckFailure(expected: "INIT from `ivshmem2 server \(arguments.joined(separator: " "))`", actual: "none")
        }
        try body(child, c)
    }

    /// The server still running and serving after `what`: a newcomer gets INIT.
    static func expectServing(_ child: ServerChild, after what: String) throws {
        try require(child.waitExit(timeout: 0) == nil, "the server still running after \(what)", "it ended: \(child.errorOutput())")
        let c = try child.connect()
        defer { c.close() }
        guard let m = try c.next(timeout: 5), m.header.type == 0 else {
            throw CheckFailure(expected: "INIT for a newcomer after \(what)", actual: "none")
        }
    }

    static func fixtureDirectory() -> String? {
        var candidates = ["fixtures/reference/v2-server-3-peers"]
        if let exe = try? SpawnedProcess.currentExecutablePath() {
            // <repo>/.build/<config>/ivshmem2 → <repo>
            var parts = exe.split(separator: "/").map(String.init)
            if parts.count >= 3 {
                parts.removeLast(3)
                candidates.append("/" + parts.joined(separator: "/") + "/fixtures/reference/v2-server-3-peers")
            }
            // Installed: PREFIX/bin/ivshmem2 → PREFIX/share/ivshmem2 (make install).
            if let slash = exe.lastIndex(of: "/") {
                candidates.append(String(exe[..<slash]) + "/../share/ivshmem2/fixtures/reference/v2-server-3-peers")
            }
        }
        candidates.append("/work/shared/reference/v2-server-3-peers")
        return candidates.first { (try? FileSystem.status(ofPath: $0 + "/A.jsonl")) != nil }
    }

    struct Record { var type: String; var len: UInt32; var body: String; var nfds: Int }

    static func records(_ path: String) throws -> [Record] {
        let text = String(decoding: try FileSystem.readFile(path), as: UTF8.self)
        return try text.split(separator: "\n").filter { !$0.allSatisfy(\.isWhitespace) }.map { line in
            guard let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let type = obj["type"] as? String, let len = obj["len"] as? Int, let body = obj["body"] as? String, let nfds = obj["nfds"] as? Int
            else { throw CheckFailure(expected: "a capture record", actual: String(line)) }
            return Record(type: type, len: UInt32(len), body: body, nfds: nfds)
        }
    }

    static func typeName(_ t: UInt32) -> String { [0: "INIT", 1: "EVENT_FD", 2: "PEER_GONE"][t] ?? "type \(t)" }

    /// Store / load a 32-bit State Table entry (or any word) in a raw client's mapping.
    static func store32(_ m: MemoryMapping, _ offset: Int, _ v: UInt32) { m.base.storeBytes(of: v.littleEndian, toByteOffset: offset, as: UInt32.self) }
    static func load32(_ m: MemoryMapping, _ offset: Int) -> UInt32 { UInt32(littleEndian: m.base.load(fromByteOffset: offset, as: UInt32.self)) }
}

extension FDWireClient {
    /// Closes the descriptors kept so far (for long runs).
    func eventFD(for wanted: WireMessage, in messages: [Message]) -> EventFD? {
        for m in messages {
            if let d = try? WireMessage.decodeFollowing(header: m.header, body: m.body), d == wanted, let fd = m.fds.first { return EventFD(fd: fd) }
        }
        return nil
    }
}

extension BuiltinChecks {
    /// Built-in conformance checks for the server requirements that scripts cannot express.
    static let serverChecks: [BuiltinCheck] = serverConfigChecks + serverFileChecks + serverPeerChecks + serverHostileChecks + [referenceCheck]

    // MARK: - Configuration (SRV-CFG-*, SRV-VIRTIO-2)

    static let serverConfigChecks: [BuiltinCheck] = [
        BuiltinCheck(name: "server-defaults", summary: "`ivshmem2 server -F` without options: /tmp/ivshmem_socket, an anonymous memfd, 4 MiB, OUT 0, 2 peers, 1 vector, protocol 0") { ctx in
            // The default socket path is global: one such check at a time on this machine.
            let lockFD = try FileDescriptor.open("/tmp/ivshmem2-default-server-check.lock", flags: O_CREAT | O_RDWR | O_CLOEXEC, mode: 0o600)
            defer { lockFD.closeQuietly() }
            _ = flock(lockFD.rawValue, LOCK_EX)
            let pathState = try UnixSocket.probe(path: ServerConfiguration.defaultSocketPath)
            try require(pathState != .live && pathState != .notASocket, "\(ServerConfiguration.defaultSocketPath) free for a default server", "\(pathState) (another server runs there)")
            let child = try ServerChild(arguments: [], defaultSocket: true, captureStderr: true)
            defer { child.stop() }
            try child.waitListening()
            let c = try child.connect()
            defer { c.close() }
            guard let (msg, m) = try c.nextDecoded(initial: true), case .initial(let i) = msg, let fd = m.fds.first else {
                throw CheckFailure(expected: "INIT with the shared memory", actual: "none")
            }
            var problems: [String] = []
            if i.maxPeers != 2 { problems.append("max peers \(i.maxPeers) (default 2)") }
            if i.vectors != 1 { problems.append("vectors \(i.vectors) (default 1)") }
            if i.protocol != 0 { problems.append("protocol 0x\(String(i.protocol, radix: 16)) (default 0)") }
            if i.outputSectionSize != 0 { problems.append("output section \(i.outputSectionSize) (default 0)") }
            let size = try fd.size()
            if size != 4 << 20 { problems.append("size \(size) (default 4 MiB)") }
            let target = descriptorTarget(fd)
            if !target.hasPrefix("/memfd:") { problems.append("shared memory \(target) (default: an anonymous memfd, spec §12)") }
            c.close()
            _ = child.terminate()
            try require(problems.isEmpty, "the defaults of spec §12 (SRV-CFG-1)", problems.joined(separator: "; "))
        },
        BuiltinCheck(name: "server-option-validation", summary: "`ivshmem2 server` refuses bad sizes, peers, vectors, protocol, modes, limits, backings and paths, naming the option; accepts the limits") { ctx in
            let dir = try FileSystem.makeTemporaryDirectory(template: "/tmp/ivshmem2-options.XXXXXX")
            defer { FileSystem.removeDirectoryTree(dir) }
            let refused: [([String], [String])] = [
                (["-n", "two"], ["-n/--max-peers"]),
                (["-P", "banana"], ["-P/--protocol"]),
                (["-l", "lots"], ["-l/--size"]),
                (["--mode", "999"], ["--mode"]),
                (["-n", "4", "-V", "2", "--queue-fd-limit", "8"], ["--queue-fd-limit"]),
                (["-M", "name", "-m", dir], ["-M/--shm-name"]),
                (["-M", "a/b"], ["-M/--shm-name"]),
                (["-m", dir + "/missing"], [dir + "/missing"]),
                (["-l", "5000"], ["-l", "--size"]),
                (["-l", "0"], ["-l", "--size"]),
                (["-l", "1M", "-o", "100"], ["-o", "--output-section-size"]),
                (["-l", "1M", "-o", "6K"], ["-o", "--output-section-size"]),
                (["-n", "1"], ["-n", "--max-peers"]),
                (["-n", "0"], ["-n", "--max-peers"]),
                (["-n", "65537"], ["-n", "--max-peers"]),
                (["-V", "0"], ["-V", "--vectors"]),
                (["-V", "1025"], ["-V", "--vectors"]),
                (["-P", "0x10000"], ["-P", "--protocol"]),
                (["-l", "64K", "-n", "4", "-o", "64K"], ["-l", "--size", "-o", "-n"]),
                (["-l", "1M", "-n", "4", "-o", "256K"], ["-l", "--size", "-o", "-n"]),
            ]
            for (args, naming) in refused {
                try ServerCheckSupport.expectRefusal(ctx, args, naming: naming, requirement: "SRV-CFG-2")
            }
            let longPath = dir + "/" + String(repeating: "s", count: 120)  // longer than sun_path
            try ServerCheckSupport.expectRefusal(ctx, ["-l", "64K"], socketPath: longPath, naming: [longPath], requirement: "SRV-CFG-2")
            for args in [["-l", "1M", "-n", "65536"], ["-V", "1024", "-l", "64K"], ["-P", "0xffff"], ["-l", "1M", "-n", "4", "-o", "252K"], ["-n", "2", "-l", "4K"]] {
                try ServerCheckSupport.expectAccepted(ctx, args, requirement: "SRV-CFG-2")
            }
        },
        BuiltinCheck(name: "server-virtio-config", summary: "a virtio protocol with more than 2 peers is refused") { ctx in
            for args in [["-P", "0x8001", "-n", "3"], ["-P", "0xc000", "-n", "4"], ["-P", "0x8000", "-n", "65536"]] {
                try ServerCheckSupport.expectRefusal(ctx, args, naming: ["-P", "--protocol", "-n", "--max-peers"], requirement: "SRV-VIRTIO-2")
            }
            for args in [["-P", "0x8001", "-n", "2"], ["-P", "0x7fff", "-n", "3"]] {
                try ServerCheckSupport.expectAccepted(ctx, args, requirement: "SRV-VIRTIO-2")
            }
        },
        BuiltinCheck(name: "server-state-table-size", summary: "the server derives ST from max peers (4K up to 1024, round_up(4N, 4K) above) in validation and zeroing") { ctx in
            try ServerCheckSupport.expectAccepted(ctx, ["-n", "1024", "-l", "4K"], requirement: "SRV-CFG-3: ST 4K for 1024 peers")
            try ServerCheckSupport.expectRefusal(ctx, ["-n", "1025", "-l", "4K"], naming: ["-l", "--size", "-n"], requirement: "SRV-CFG-3: ST 8K for 1025 peers")
            try ServerCheckSupport.expectAccepted(ctx, ["-n", "1025", "-l", "8K"], requirement: "SRV-CFG-3: ST 8K for 1025 peers")
            try ServerCheckSupport.expectRefusal(ctx, ["-n", "4096", "-l", "12K"], naming: ["-l", "--size", "-n"], requirement: "SRV-CFG-3: ST 16K for 4096 peers")
            // Zeroing: a pre-filled object; the whole derived table must be zeroed.
            for (peers, st) in [(4, 0x1000), (2000, 0x2000)] {
                let name = ServerChild.uniqueShmName()
                let size = 0x8000
                let pre = try IvshmemPosix.SharedMemory.openNamed(name, size: size)
                defer { try? IvshmemPosix.SharedMemory.unlinkNamed(name) }
                do {
                    defer { pre.closeQuietly() }
                    let m = try MemoryMapping(fd: pre, size: size)
                    m.base.initializeMemory(as: UInt8.self, repeating: 0xFF, count: size)
                }
                try ServerCheckSupport.expectAccepted(ctx, ["-M", name, "-l", "32K", "-n", "\(peers)"], requirement: "SRV-SHM-2") { _, c in
                    let m = try c.mapSharedMemory(c.kept[0])
                    let table = UnsafeRawBufferPointer(start: m.base, count: st)
                    let dirty = table.firstIndex { $0 != 0 }
                    try require(dirty == nil, "the \(st)-byte State Table for \(peers) peers zeroed in a pre-filled object (SRV-SHM-2, SRV-CFG-3)", "byte 0x\(String(dirty ?? 0, radix: 16)) is 0x\(String(table[dirty ?? 0], radix: 16))")
                }
            }
        },
    ]

    // MARK: - Shared memory, socket and signals (SRV-SHM-*, SRV-SOCK-*, SRV-SIG-1)

    static let serverFileChecks: [BuiltinCheck] = [
        BuiltinCheck(name: "server-exact-size", summary: "the shared memory is exactly the configured size for every backing (no power-of-two rounding)") { ctx in
            let name = ServerChild.uniqueShmName()
            defer { try? IvshmemPosix.SharedMemory.unlinkNamed(name) }
            let dir = try FileSystem.makeTemporaryDirectory(template: "/tmp/ivshmem2-shmdir.XXXXXX")
            defer { FileSystem.removeDirectoryTree(dir) }
            for backing in [["--memfd"], ["-M", name], ["-m", dir]] {
                try ServerCheckSupport.expectAccepted(ctx, backing + ["-l", "1036K", "-n", "3", "-o", "12K"], requirement: "SRV-SHM-1") { _, c in
                    let size = try c.kept[0].size()
                    try require(size == 1036 * 1024, "a \(1036 * 1024)-byte object with \(backing.joined(separator: " "))", "\(size) bytes")
                    if backing[0] == "-M" {
                        let st = try FileSystem.status(ofPath: "/dev/shm/" + name)
                        try require(st?.size == 1036 * 1024, "/dev/shm/\(name) of \(1036 * 1024) bytes", "\(String(describing: st?.size))")
                    }
                }
            }
        },
        BuiltinCheck(name: "server-file-modes", summary: "socket file and named shm object are created 0600") { ctx in
            let name = ServerChild.uniqueShmName()
            defer { try? IvshmemPosix.SharedMemory.unlinkNamed(name) }
            try ServerCheckSupport.expectAccepted(ctx, ["-M", name, "-l", "64K"], requirement: "SRV-SHM-3") { child, _ in
                let sock = try FileSystem.status(ofPath: child.socketPath)
                try require(sock?.isSocket == true && sock?.permissions == 0o600, "socket file mode 0600", sock.map { "0" + String($0.permissions, radix: 8) } ?? "missing")
                let shm = try FileSystem.status(ofPath: "/dev/shm/" + name)
                try require(shm?.permissions == 0o600, "shared-memory object mode 0600", shm.map { "0" + String($0.permissions, radix: 8) } ?? "missing")
            }
        },
        BuiltinCheck(name: "server-shm-directory", summary: "with -m DIR the server creates a file there and unlinks it at once") { ctx in
            let dir = try FileSystem.makeTemporaryDirectory(template: "/tmp/ivshmem2-shmdir.XXXXXX")
            defer { FileSystem.removeDirectoryTree(dir) }
            try ServerCheckSupport.expectAccepted(ctx, ["-m", dir, "-l", "64K"], requirement: "SRV-SHM-4") { _, c in
                let entries = try FileSystem.listDirectory(dir)
                try require(entries.isEmpty, "\(dir) empty while the server runs (the file unlinked)", "\(entries)")
                let target = descriptorTarget(c.kept[0])
                try require(target.hasPrefix(dir + "/") && target.hasSuffix("(deleted)"), "the INIT fd to be a deleted file in \(dir)", target)
                let size = try c.kept[0].size()
                try require(size == 64 << 10, "the file of 64 KiB", "\(size) bytes")
            }
        },
        BuiltinCheck(name: "server-socket-live", summary: "a second server on a live socket path exits non-zero; the first keeps serving") { ctx in
            let first = try ServerChild(arguments: ["-l", "64K", "-v"], captureStderr: true)
            defer { first.stop() }
            try first.waitListening()
            let second = try ServerChild(arguments: ["-l", "64K"], socketPath: first.socketPath, captureStderr: true)
            defer { second.stop() }
            guard let status = second.waitExit(timeout: 5) else {
                throw CheckFailure(expected: "the second server to refuse the live socket (SRV-SOCK-1)", actual: "still running after 5 s")
            }
            try require(status != .exited(0), "a non-zero exit status (SRV-SOCK-1)", "\(status)")
            ctx.trace.record("check", .lifecycle, detail: "second server: \(status): \(second.errorOutput())")
            try require(second.errorOutput().contains(first.socketPath) && second.errorOutput().contains("already listening"),
                        "a message naming \(first.socketPath) as already listening", second.errorOutput())
            let state = try UnixSocket.probe(path: first.socketPath)
            try require(state == .live, "the first server still listening", "\(state)")
            let c = try first.connect()
            defer { c.close() }
            guard let m = try c.next(timeout: 5), m.header.type == 0, m.fds.count == 1 else {
                let st = first.waitExit(timeout: 0)
                throw CheckFailure(expected: "INIT from the first server (still serving)", actual: (c.closedByServer ? "connection closed" : "nothing") + "; first server: \(st.map { "\($0)" } ?? "running"), \(first.errorOutput())")
            }
        },
        BuiltinCheck(name: "server-socket-stale", summary: "a stale socket file is removed and the server binds in its place") { ctx in
            let dir = try FileSystem.makeTemporaryDirectory(template: "/tmp/ivshmem2-stale.XXXXXX")
            defer { FileSystem.removeDirectoryTree(dir) }
            let path = dir + "/stale.sock"
            let old = try UnixSocket.listen(path: path, nonBlocking: true)
            old.closeQuietly()
            let state = try UnixSocket.probe(path: path)
            try require(state == .stale, "a stale socket file to start from", "\(state)")
            let child = try ServerChild(arguments: ["-l", "64K"], socketPath: path, captureStderr: true)
            defer { child.stop() }
            do { try child.waitListening() } catch let f as CheckFailure {
                throw CheckFailure(expected: "the server to replace the stale socket file and listen (SRV-SOCK-2)", actual: f.actual)
            }
            let c = try child.connect()
            try c.expect(.initial(InitialInfo(id: 0, maxPeers: 2, vectors: 1, protocol: 0, outputSectionSize: 0)), who: "a client")
            c.close()
            child.stop()
            try require(child.errorOutput().contains("stale"), "a log line about the stale socket file", child.errorOutput())
            // Something that is not a socket is never removed: the server refuses it.
            let plain = dir + "/plain"
            try FileSystem.writeFile(plain, bytes: Array("keep me".utf8))
            let refused = try ServerChild(arguments: ["-l", "64K"], socketPath: plain, captureStderr: true)
            defer { refused.stop() }
            guard let status = refused.waitExit(timeout: 5) else {
                throw CheckFailure(expected: "the server to refuse a regular file at its socket path (SRV-SOCK-2)", actual: "still running after 5 s")
            }
            try require(status != .exited(0) && refused.errorOutput().contains("not a socket"), "a non-zero exit and a message saying it is not a socket",
                        "\(status): \(refused.errorOutput())")
            try require(try FileSystem.readFile(plain) == Array("keep me".utf8), "the regular file left as it was", "changed or removed")
        },
        BuiltinCheck(name: "server-signals", summary: "SIGTERM / SIGINT: peers see a hang-up, socket and shm object unlinked, exit status 0") { ctx in
            for sig in [SIGTERM, SIGINT] {
                let name = ServerChild.uniqueShmName()
                let child = try ServerChild(arguments: ["-M", name, "-l", "64K", "-n", "3", "-V", "2"], shmName: name)
                defer { child.stop() }
                try child.waitListening()
                let x = try child.connect()
                defer { x.close() }
                let y = try child.connect()
                defer { y.close() }
                _ = try x.takeIntroduction()
                _ = try y.takeIntroduction()
                try require((try FileSystem.status(ofPath: "/dev/shm/" + name)) != nil, "/dev/shm/\(name) while the server runs", "missing")
                try child.process.signal(sig)
                for (who, c) in [("X", x), ("Y", y)] {
                    while let m = try c.next(timeout: 3) { ctx.trace.record(who, .wire, detail: "before the hang-up: \(ServerCheckSupport.typeName(m.header.type))") }
                    try require(c.closedByServer, "\(who) to see the hang-up after signal \(sig)", "connection still open")
                }
                let status = child.waitExit(timeout: 5)
                try require(status == .exited(0), "exit status 0 after signal \(sig)", status.map { "\($0)" } ?? "still running")
                try require((try FileSystem.status(ofPath: child.socketPath)) == nil, "the socket file unlinked after signal \(sig)", "still there")
                try require((try FileSystem.status(ofPath: "/dev/shm/" + name)) == nil, "the shm object unlinked after signal \(sig)", "/dev/shm/\(name) still there")
            }
        },
    ]

    // MARK: - Peers on the case's server (SRV-ID-2, SRV-GONE-*, SRV-IO-*)

    static let serverPeerChecks: [BuiltinCheck] = [
        BuiltinCheck(name: "server-full-silent", summary: "a connection beyond max peers is closed without a single byte; the others are still served") { ctx in
            let n = Int(ctx.server.maxPeers)
            var clients: [FDWireClient] = []
            defer { for c in clients { c.close() } }
            for _ in 0..<n {
                let c = try FDWireClient(path: ctx.socketPath)
                clients.append(c)
            }
            // Client i gets its introduction, then the eventfds of the n-1-i who came after it.
            let V = Int(ctx.server.vectors)
            for (i, c) in clients.enumerated() { _ = try c.takeIntroduction(); _ = try c.take(V * (n - 1 - i)) }
            for attempt in 1...3 {  // every refused connection, not just the first
                let extra = try FDWireClient(path: ctx.socketPath)
                defer { extra.close() }
                try extra.expectSilentClose(who: "connection \(n + attempt) of \(n)")
            }
            for (i, c) in clients.enumerated() {
                if let m = try c.next(timeout: 0.1) { throw CheckFailure(expected: "nothing for peer \(i) about the refused connection", actual: ServerCheckSupport.typeName(m.header.type)) }
            }
            clients[n - 1].close()
            for i in 0..<(n - 1) { try clients[i].expect(.peerGone(id: UInt32(n - 1)), who: "peer \(i)") }
            let again = try FDWireClient(path: ctx.socketPath)
            clients.append(again)
            guard let (msg, _) = try again.nextDecoded(initial: true), case .initial(let info) = msg else {
                throw CheckFailure(expected: "INIT for a newcomer after a place became free", actual: again.closedByServer ? "closed" : "nothing")
            }
            try require(info.id == UInt32(n - 1), "the freed ID \(n - 1)", "\(info.id)")
        },
        BuiltinCheck(name: "server-gone-order", summary: "departure: socket closed, State Table entry 0 before PEER_GONE reaches the others") { ctx in
            let x = try FDWireClient(path: ctx.socketPath)
            defer { x.close() }
            _ = try x.takeIntroduction()
            let shm = try x.mapSharedMemory(x.kept[0])
            for how in ["sends data", "hangs up"] {
                let y = try FDWireClient(path: ctx.socketPath)
                defer { y.close() }
                let ys = try y.takeIntroduction()
                _ = try x.take(Int(ctx.server.vectors))
                let yid = Int(ys[0].body.littleEndianUInt32(at: 8))
                ServerCheckSupport.store32(shm, 4 * yid, 0xB2)
                if how == "sends data" {
                    try y.send([0x42])
                    if let m = try y.next(timeout: 3) { throw CheckFailure(expected: "Y's connection closed after it sent data", actual: "a \(m.typeName)") }
                    try require(y.closedByServer, "the server to close the socket of a peer that sent data (SRV-GONE-1, SRV-GONE-2)", "still open")
                } else {
                    y.close()
                }
                guard let (msg, _) = try x.nextDecoded() else { throw CheckFailure(expected: "PEER_GONE(\(yid)) at X when Y \(how)", actual: "nothing") }
                let state = ServerCheckSupport.load32(shm, 4 * yid)
                try require(msg == .peerGone(id: UInt32(yid)), "PEER_GONE(\(yid))", "\(msg)")
                try require(state == 0, "Y's State Table entry already 0 when PEER_GONE arrives (SRV-GONE-2, SRV-GONE-3)", "0x\(String(state, radix: 16))")
            }
        },
        BuiltinCheck(name: "server-gone-frees", summary: "after a departure the server holds none of the peer's fds and reuses its ID") { ctx in
            let child = try ServerChild(arguments: ["-l", "1M", "-n", "4", "-V", "3"])
            defer { child.stop() }
            try child.waitListening()
            let x = try child.connect()
            defer { x.close() }
            _ = try x.takeIntroduction()
            let base = child.openDescriptorCount()
            let y = try child.connect()
            defer { y.close() }
            _ = try y.takeIntroduction()
            _ = try x.take(3)
            let during = child.openDescriptorCount()
            try require(during == base + 4, "the server to hold Y's socket and 3 eventfds", "\(during - base) more fds")
            y.close()
            try x.expect(.peerGone(id: 1), who: "X")
            try require(Monotonic.poll(timeout: 2) { child.openDescriptorCount() == base }, "the server to close Y's socket and eventfds (SRV-GONE-4)", "\(child.openDescriptorCount() - base) still open")
            let z = try child.connect()
            defer { z.close() }
            try z.expect(.initial(InitialInfo(id: 1, maxPeers: 4, vectors: 3, protocol: 0, outputSectionSize: 0)), who: "the next newcomer (ID 1 freed)")
        },
        BuiltinCheck(name: "server-send-failure", summary: "a peer whose socket fails a send departs; the others are told and the server keeps serving") { ctx in
            let V = UInt32(ctx.server.vectors)
            let x = try FDWireClient(path: ctx.socketPath)
            defer { x.close() }
            _ = try x.takeIntroduction()
            let c = try FDWireClient(path: ctx.socketPath)
            defer { c.close() }
            _ = try c.takeIntroduction()
            _ = try x.take(Int(V))
            _ = Glibc.shutdown(c.socket.rawValue, Int32(SHUT_RD))  // the server's next send to C fails with EPIPE
            let d = try FDWireClient(path: ctx.socketPath)
            defer { d.close() }
            for v in 0..<V { try x.expect(.eventFD(id: 2, vector: v), who: "X") }
            try x.expect(.peerGone(id: 1), who: "X (C's send failed, SRV-IO-3)")
            _ = try d.take(until: .peerGone(id: 1))  // the newcomer D is told that C left
            let e = try FDWireClient(path: ctx.socketPath)
            defer { e.close() }
            try e.expect(.initial(InitialInfo(id: 1, maxPeers: UInt32(ctx.server.maxPeers), vectors: V, protocol: ctx.server.advertisedProtocol(forPeer: 1), outputSectionSize: ctx.server.outputSectionSize)), who: "a newcomer after the failure (server still running)")
        },
        BuiltinCheck(name: "server-slow-reader", summary: "a peer that never reads stalls nobody; later it gets every message in order, each with its own fd") { ctx in
            let V = UInt32(ctx.server.vectors)
            let s = try FDWireClient(path: ctx.socketPath)  // never reads until the end
            defer { s.close() }
            let r = try FDWireClient(path: ctx.socketPath)
            defer { r.close() }
            _ = try r.takeIntroduction()
            let cycles = 600
            var worst = 0.0
            let start = Monotonic.now()
            for i in 0..<cycles {
                let t0 = Monotonic.now()
                let t = try FDWireClient(path: ctx.socketPath)
                for v in 0..<V { try r.expect(.eventFD(id: 2, vector: v), timeout: 2, who: "R in cycle \(i)") }
                t.close()
                try r.expect(.peerGone(id: 2), timeout: 2, who: "R in cycle \(i)")
                r.close(keepSocket: true)
                worst = max(worst, Monotonic.now() - t0)
            }
            var pending: Int32 = 0
            _ = ioctl(s.socket.rawValue, UInt(FIONREAD), &pending)
            let total = 40 + 16 * Int(V) * 2 + cycles * (16 * Int(V) + 12)
            ctx.trace.record("check", .lifecycle, detail: "\(cycles) cycles in \(Monotonic.now() - start) s, worst \(worst) s; S has \(pending) of \(total) bytes in its socket")
            try require(worst < 1.0, "every cycle served within 1 s while S does not read (SRV-IO-1)", "worst \(worst) s")
            // Now S reads: everything, in order, one fd per EVENT_FD (SRV-IO-2).
            var expected: [WireMessage] = [.initial(InitialInfo(id: 0, maxPeers: UInt32(ctx.server.maxPeers), vectors: V, protocol: ctx.server.advertisedProtocol(forPeer: 0), outputSectionSize: ctx.server.outputSectionSize))]
            expected += (0..<V).map { .eventFD(id: 0, vector: $0) } + (0..<V).map { .eventFD(id: 1, vector: $0) }
            for _ in 0..<cycles { expected += (0..<V).map { .eventFD(id: 2, vector: $0) } + [.peerGone(id: 2)] }
            for (k, want) in expected.enumerated() {
                guard let m = try s.next(timeout: 2) else {
                    throw CheckFailure(expected: "message \(k) for S: \(want)", actual: s.closedByServer ? "the server dropped S" : "nothing")
                }
                let got = k == 0 ? (try? WireMessage.decodeInitial(header: m.header, body: m.body)).map { WireMessage.initial($0) } : try? WireMessage.decodeFollowing(header: m.header, body: m.body)
                let fds = m.fds.count
                s.close(keepSocket: true)
                try require(got == want && fds == (want.carriesFileDescriptor ? 1 : 0) && m.fdsWithFirstByte, "message \(k) for S: \(want) with \(want.carriesFileDescriptor ? 1 : 0) fd (SRV-IO-2)", "\(got.map { "\($0)" } ?? "undecodable") with \(fds) fd(s)")
            }
            try require(pending < Int32(total), "S's socket buffer to have filled, so the server had to queue (otherwise the test proves little)", "all \(total) bytes were in S's socket")
        },
        BuiltinCheck(name: "server-fd-per-message", summary: "each EVENT_FD carries the eventfd it names: signals reach exactly that peer and vector") { ctx in
            let V = UInt32(ctx.server.vectors)
            let x = try FDWireClient(path: ctx.socketPath)
            defer { x.close() }
            let xs0 = try x.takeIntroduction()
            let y = try FDWireClient(path: ctx.socketPath)
            defer { y.close() }
            let ys = try y.takeIntroduction()
            let xs = xs0 + (try x.take(Int(V)))
            for (sender, sMsgs, receiver, rMsgs, id) in [("X", xs, "Y", ys, UInt32(1)), ("Y", ys, "X", xs, UInt32(0))] {
                for v in 0..<V {
                    guard let out = x.eventFD(for: .eventFD(id: id, vector: v), in: sMsgs), let own = x.eventFD(for: .eventFD(id: id, vector: v), in: rMsgs) else {
                        throw CheckFailure(expected: "EVENT_FD(\(id), \(v)) at \(sender) and at \(receiver)", actual: "missing")
                    }
                    try out.signal(UInt64(v) + 7)
                    try require(try own.consume() == UInt64(v) + 7, "\(sender)'s fd for EVENT_FD(\(id), \(v)) to reach \(receiver)'s own eventfd for vector \(v) (SRV-IO-2, WIRE-EVT-1)", "not signalled")
                    for w in 0..<V where w != v {
                        if let other = x.eventFD(for: .eventFD(id: id, vector: w), in: rMsgs), let n = try other.consume() {
                            throw CheckFailure(expected: "only vector \(v) signalled", actual: "vector \(w) got \(n)")
                        }
                    }
                }
            }
        },
    ]

    // MARK: - The reference capture (SRV-REF-1)

    static let referenceCheck = BuiltinCheck(name: "server-reference-capture", summary: "replays fixtures/reference/v2-server-3-peers: same options, same order, same bytes and fd counts") { ctx in
        guard let dir = ServerCheckSupport.fixtureDirectory() else {
            throw CheckFailure(expected: "the capture fixtures/reference/v2-server-3-peers", actual: "not found")
        }
        let want = try ["A", "B", "C"].map { try ServerCheckSupport.records(dir + "/\($0).jsonl") }
        let shmDir = try FileSystem.makeTemporaryDirectory(template: "/tmp/ivshmem2-ref.XXXXXX")
        defer { FileSystem.removeDirectoryTree(shmDir) }
        let child = try ServerChild(arguments: ["-m", shmDir, "-l", "1M", "-n", "4", "-V", "2", "-o", "64K", "-P", "0x4001"])
        defer { child.stop() }
        try child.waitListening()
        var got: [[FDWireClient.Message]] = [[], [], []]
        func take(_ c: FDWireClient, _ who: Int, _ n: Int) throws -> [FDWireClient.Message] {
            var out: [FDWireClient.Message] = []
            for _ in 0..<n {
                guard let m = try c.next(timeout: 3) else {
                    throw CheckFailure(expected: "\(["A", "B", "C"][who]) message \(got[who].count + 1) of the capture", actual: c.closedByServer ? "connection closed" : "nothing")
                }
                out.append(m)
                got[who].append(m)
            }
            return out
        }
        func fd(_ ms: [FDWireClient.Message], _ id: UInt32, _ v: UInt32) throws -> EventFD {
            for m in ms where m.header.type == 1 && m.body.littleEndianUInt32(at: 0) == id && m.body.littleEndianUInt32(at: 4) == v && m.fds.count == 1 { return EventFD(fd: m.fds[0]) }
            throw CheckFailure(expected: "EVENT_FD(\(id), \(v))", actual: "missing")
        }
        /// Signals `target` through the sender's copy; the receiver's own copy must fire once.
        func ring(_ sender: [FDWireClient.Message], _ receiver: [FDWireClient.Message], _ id: UInt32, _ v: UInt32) throws {
            try fd(sender, id, v).signal()
            let own = try fd(receiver, id, v)
            try require(try own.wait(timeoutMilliseconds: 2000) && own.consume() == 1, "peer \(id)'s own eventfd for vector \(v) to fire once", "it did not")
        }
        // 1. A connects (ID 0) and writes its state.
        let a = try child.connect()
        defer { a.close() }
        var aMsgs = try take(a, 0, 3)
        let shm = try a.mapSharedMemory(a.kept[0])
        try require(shm.size == 1 << 20, "the shared memory of 1 MiB", "\(shm.size) bytes")
        ServerCheckSupport.store32(shm, 0, 0xA1)
        // 2. B connects (ID 1), sets its state and rings A; A rings B; B rings A; B leaves.
        let b = try child.connect()
        defer { b.close() }
        let bMsgs = try take(b, 1, 5)
        aMsgs += try take(a, 0, 2)
        let bShm = try b.mapSharedMemory(b.kept[0])
        ServerCheckSupport.store32(bShm, 4, 0xB2)
        try require(ServerCheckSupport.load32(bShm, 0) == 0xA1 && ServerCheckSupport.load32(shm, 4) == 0xB2, "A and B to read each other's State Table entry",
                    "B reads 0x\(String(ServerCheckSupport.load32(bShm, 0), radix: 16)), A reads 0x\(String(ServerCheckSupport.load32(shm, 4), radix: 16))")
        try ring(bMsgs, aMsgs, 0, 0)
        try ring(aMsgs, bMsgs, 1, 1)
        try ring(bMsgs, aMsgs, 0, 1)
        if let extra = try b.next(timeout: 0.1) { got[1].append(extra) }
        b.close()
        aMsgs += try take(a, 0, 1)
        try require(ServerCheckSupport.load32(shm, 4) == 0, "B's State Table entry zeroed when A gets its PEER_GONE (SRV-GONE-2)",
                    "0x\(String(ServerCheckSupport.load32(shm, 4), radix: 16))")
        // 3. C connects (ID 1 again), writes the R/W section; A reads it and leaves; C leaves last.
        let c = try child.connect()
        defer { c.close() }
        _ = try take(c, 2, 5)
        aMsgs += try take(a, 0, 2)
        let cShm = try c.mapSharedMemory(c.kept[0])
        ServerCheckSupport.store32(cShm, 0x1000, 0xC0DE)
        try require(ServerCheckSupport.load32(shm, 0x1000) == 0xC0DE, "A to read C's R/W write", "0x\(String(ServerCheckSupport.load32(shm, 0x1000), radix: 16))")
        if let extra = try a.next(timeout: 0.1) { got[0].append(extra) }
        a.close()
        _ = try take(c, 2, 1)
        try require(ServerCheckSupport.load32(cShm, 0) == 0, "A's State Table entry zeroed when C gets its PEER_GONE (SRV-GONE-2)",
                    "0x\(String(ServerCheckSupport.load32(cShm, 0), radix: 16))")
        if let extra = try c.next(timeout: 0.1) { got[2].append(extra) }
        c.close()
        for (k, who) in ["A", "B", "C"].enumerated() {
            let lines = got[k].map { "\(ServerCheckSupport.typeName($0.header.type)) len \($0.header.length) body \(hex($0.body)) nfds \($0.fds.count)" }
            let exp = want[k].map { "\($0.type) len \($0.len) body \($0.body) nfds \($0.nfds)" }
            if lines != exp {
                let i = (0..<min(lines.count, exp.count)).first { lines[$0] != exp[$0] } ?? min(lines.count, exp.count)
                throw CheckFailure(expected: "\(who) message \(i + 1): \(i < exp.count ? exp[i] : "nothing more") (capture, \(exp.count) messages)",
                                   actual: i < lines.count ? lines[i] : "nothing more (\(lines.count) messages)")
            }
        }
    }
}

extension FDWireClient {
    /// Closes every fd received so far, keeping the connection.
    func close(keepSocket: Bool) {
        guard keepSocket else { close(); return }
        closeKept()
    }
}
