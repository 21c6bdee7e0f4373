import IvshmemTestSupport
import IvshmemPosix
#if canImport(Glibc)
import Glibc
#endif

/// A QEMU process driven through its qtest text protocol (`-qtest unix:PATH`), with no guest
/// and no firmware: TCG, stopped vCPU (`-S`), so nothing but the test touches the devices.
/// Debian's QEMU has the qtest protocol but not the qtest accelerator; KVM is never used, so
/// MSI-X messages and the PBA stay observable (notes/qemu-and-guests.md).
final class QEMUMachine {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// `qemu-system-x86_64` on PATH, or nil (the QEMU checks are then skipped).
    static let executable: String? = {
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/qemu-system-x86_64"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }()

    /// Why the QEMU checks are skipped, for the trait's comment.
    static let missingReason = "qemu-system-x86_64 is not installed (make test installs qemu-system-x86 with apt-get; it could not here)"

    let process: SpawnedProcess
    let logPath: String
    private let connection: FileDescriptor
    private var buffer: [UInt8] = []
    private var stopped = false

    /// Starts QEMU with `deviceArguments` (chardevs, objects, devices) and waits for its qtest
    /// connection. A `-chardev socket` to a server must find it listening already: QEMU reads
    /// the v1 set-up synchronously while it realises the device.
    init(deviceArguments: [String], scratch: ScratchDirectory, timeout: Double = 30) throws {
        guard let executable = Self.executable else { throw Failure(description: Self.missingReason) }
        let qtestPath = scratch.file("qtest-\(Int(Monotonic.now() * 1000) % 1_000_000).sock")
        let listener = try UnixSocket.listen(path: qtestPath, nonBlocking: true)
        defer {
            listener.closeQuietly()
            try? FileSystem.unlinkIfPresent(qtestPath)
        }
        logPath = qtestPath + ".log"
        let log = try FileDescriptor.open(logPath, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
        defer { log.closeQuietly() }
        let arguments = ["-machine", "q35", "-accel", "tcg", "-S", "-nodefaults", "-display", "none",
                         "-qtest", "unix:\(qtestPath)", "-qtest-log", "none"] + deviceArguments
        process = try SpawnedProcess.spawn(executable: executable, arguments: arguments,
                                           standardInput: .null, standardOutput: .descriptor(log), standardError: .descriptor(log))
        let deadline = Monotonic.now() + timeout
        var accepted: FileDescriptor?
        while accepted == nil {
            let left = deadline - Monotonic.now()
            let exited = try process.waitWithTimeout(seconds: 0) != nil
            if left <= 0 || exited {
                try? process.signal(SIGKILL)
                _ = try? process.wait()
                throw Failure(description: "QEMU did not connect its qtest socket: \(Self.read(logPath))")
            }
            if try listener.waitReadable(timeoutMilliseconds: Int32(min(left, 0.2) * 1000) + 1) {
                accepted = try UnixSocket.accept(listener, nonBlocking: false)
            }
        }
        connection = accepted!
    }

    deinit { terminate() }

    /// What QEMU wrote to stdout and stderr.
    var log: String { Self.read(logPath) }

    private static func read(_ path: String) -> String {
        (try? FileSystem.readFile(path)).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }

    /// Sends one qtest command and returns its answer line (`OK …`); anything else throws.
    @discardableResult
    func command(_ line: String, timeout: Double = 20) throws -> String {
        try connection.writeAll(line + "\n")
        let deadline = Monotonic.now() + timeout
        while true {
            if let newline = buffer.firstIndex(of: 0x0A) {
                let answer = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                if answer.hasPrefix("IRQ") { continue }  // asynchronous notices
                guard answer.hasPrefix("OK") else { throw Failure(description: "qtest '\(line)' answered '\(answer)'") }
                return answer
            }
            let left = deadline - Monotonic.now()
            guard left > 0, try connection.waitReadable(timeoutMilliseconds: Int32(left * 1000) + 1) else {
                throw Failure(description: "qtest '\(line)': no answer in \(timeout) s; QEMU log: \(log)")
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = try chunk.withUnsafeMutableBytes { try connection.read(into: $0) }
            guard n > 0 else { throw Failure(description: "qtest connection closed at '\(line)'; QEMU log: \(log)") }
            buffer += chunk[..<n]
        }
    }

    private func value(_ answer: String) throws -> UInt64 {
        guard let word = answer.split(separator: " ").dropFirst().first,
              let v = UInt64(word.hasPrefix("0x") ? word.dropFirst(2) : word, radix: word.hasPrefix("0x") ? 16 : 10)
        else { throw Failure(description: "qtest answer without a value: '\(answer)'") }
        return v
    }

    func readl(_ address: UInt64) throws -> UInt32 { UInt32(truncatingIfNeeded: try value(command("readl 0x\(String(address, radix: 16))"))) }
    func writel(_ address: UInt64, _ v: UInt32) throws { try command("writel 0x\(String(address, radix: 16)) 0x\(String(v, radix: 16))") }
    func readq(_ address: UInt64) throws -> UInt64 { try value(command("readq 0x\(String(address, radix: 16))")) }
    /// A memory read or write of 1, 2, 4 or 8 bytes.
    func read(_ address: UInt64, size: Int) throws -> UInt64 {
        let op = ["readb", "readw", "readl", "readq"][[1, 2, 4, 8].firstIndex(of: size)!]
        return try value(command("\(op) 0x\(String(address, radix: 16))"))
    }
    func write(_ address: UInt64, size: Int, _ v: UInt64) throws {
        let op = ["writeb", "writew", "writel", "writeq"][[1, 2, 4, 8].firstIndex(of: size)!]
        try command("\(op) 0x\(String(address, radix: 16)) 0x\(String(v, radix: 16))")
    }
    func outl(_ port: UInt16, _ v: UInt32) throws { try command("outl 0x\(String(port, radix: 16)) 0x\(String(v, radix: 16))") }

    /// Port I/O of `size` bytes.
    func inPort(_ port: UInt16, size: Int) throws -> UInt32 {
        let op = size == 1 ? "inb" : size == 2 ? "inw" : "inl"
        return UInt32(truncatingIfNeeded: try value(command("\(op) 0x\(String(port, radix: 16))")))
    }

    func outPort(_ port: UInt16, _ v: UInt32, size: Int) throws {
        let op = size == 1 ? "outb" : size == 2 ? "outw" : "outl"
        try command("\(op) 0x\(String(port, radix: 16)) 0x\(String(v, radix: 16))")
    }

    /// SIGTERM (SIGKILL after a while) and reap.
    func terminate() {
        guard !stopped else { return }
        stopped = true
        connection.closeQuietly()
        try? process.signal(SIGTERM)
        if (try? process.waitWithTimeout(seconds: 10)) == nil {
            try? process.signal(SIGKILL)
            _ = try? process.wait()
        }
    }
}

/// A PCI function on bus 0 of a ``QEMUMachine``, reached through 0xCF8/0xCFC (MMCONFIG is
/// not enabled without firmware).
struct QEMUPCIFunction {
    let machine: QEMUMachine
    let slot: Int

    /// The first function on bus 0 whose vendor and device ID match.
    static func find(vendor: UInt16, device: UInt16, in machine: QEMUMachine) throws -> QEMUPCIFunction {
        for slot in 0..<32 {
            let f = QEMUPCIFunction(machine: machine, slot: slot)
            if try f.config(0, size: 4) == UInt32(device) << 16 | UInt32(vendor) { return f }
        }
        throw QEMUMachine.Failure(description: "no \(String(vendor, radix: 16)):\(String(device, radix: 16)) on bus 0")
    }

    private func select(_ offset: Int) throws {
        try machine.outl(0xCF8, 0x8000_0000 | UInt32(slot) << 11 | UInt32(offset & ~3))
    }

    func config(_ offset: Int, size: Int) throws -> UInt32 {
        try select(offset)
        return try machine.inPort(0xCFC + UInt16(offset & 3), size: size)
    }

    func setConfig(_ offset: Int, _ value: UInt32, size: Int) throws {
        try select(offset)
        try machine.outPort(0xCFC + UInt16(offset & 3), value, size: size)
    }
}
