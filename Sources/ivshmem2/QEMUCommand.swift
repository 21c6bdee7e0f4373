#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import IvshmemModel
import IvshmemPosix
import IvshmemQEMUProxy
import IvshmemTransport

/// `ivshmem2 qemu`: an emulated ivshmem v2 function, attached to a server as usual, inside an
/// unmodified QEMU VM through QEMU's multi-process PCI proxy (`x-pci-proxy-dev`).
struct QEMUCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qemu",
        abstract: "Start QEMU with the device plugged in through QEMU's multi-process PCI proxy.",
        discussion: """
            ivshmem2 qemu -S SOCKET [options] -- qemu-system-x86_64 ARGS…

            Attaches a device to the ivshmem v2 server at SOCKET, starts QEMU with
            '-device x-pci-proxy-dev,id=ivshmem2,fd=3' appended (fd 3 is one end of a socket
            pair) and serves every config and BAR access of the guest until QEMU exits.
            Guest RAM must be a shared memfd for the proxy: unless ARGS name a memory
            backend, '-object memory-backend-memfd,…,share=on -machine memory-backend=…'
            of the -m size is added.

            The device runs in INTx mode on pin A (the proxy forwards no MSI-X), so the
            server must offer exactly one vector (-V 1). BAR2 (the shared memory) is seen
            by QEMU as a 32-bit BAR; keep it below 4 GiB (the default placement for small
            sizes). Under KVM the guest gets INTx through the irqfd; under TCG it gets no
            interrupt from the device at all and must poll.

            At the end it prints what it served and the findings driver checking recorded
            while the guest's firmware and kernel used the device. Exit status: QEMU's,
            or 1 when the link to QEMU failed.
            """)

    @Option(name: [.customShort("S"), .long], help: "Server socket path.") var socket: String = "/tmp/ivshmem_socket"
    @Option(help: "Behaviour profile (only 'spec' works through the proxy: see --help).") var profile: String = "spec"
    @Option(name: .customLong("register-space"), help: "BAR0 register region: memory or io.") var registerSpace: String = "memory"
    @Flag(name: .customLong("no-checking"), help: "Do not record driver findings.") var noChecking = false
    @Option(help: "Seconds the server may take to introduce the peers.") var timeout: Double = 10
    @OptionGroup var logging: LoggingOptions
    @Flag(help: "Print every message from QEMU (config and BAR accesses, resets) on stderr.") var trace = false
    @Argument(parsing: .postTerminator, help: "The QEMU command line, after '--'.") var qemu: [String] = []

    func validate() throws {
        guard !qemu.isEmpty else { throw ValidationError("give the QEMU command after '--', e.g. -- qemu-system-x86_64 -machine q35 …") }
        guard profile == "spec" else {
            throw ValidationError("profile '\(profile)' cannot run behind QEMU's proxy: 'jailhouse' has no BAR2 (its shared memory is not reachable through a BAR), 'qemu-rfc' has no INTx mode")
        }
        guard RegisterSpace(rawValue: registerSpace) != nil else { throw ValidationError("--register-space must be 'memory' or 'io', got '\(registerSpace)'") }
    }

    func run() throws {
        try Signals.ignoreBrokenPipe()
        logging.apply()
        let quiet = logging.quiet
        let options = AttachOptions(profile: profile, interrupts: .intx(pin: 1), registerSpace: RegisterSpace(rawValue: registerSpace) ?? .memory,
                                    checking: !noChecking, timeout: timeout)
        let link: AttachedDevice
        do { link = try AttachedDevice.attach(socketPath: socket, options: options) } catch {
            throw ToolFailure("attaching to \(socket): \(error)")
        }
        defer { link.close() }
        let device = link.device
        let (ours, theirs) = try UnixSocket.pair()
        let endpoint = QEMUProxyEndpoint(device: device, socket: ours)
        if trace { endpoint.onMessage { writeStderrLine("ivshmem2 qemu: trace: \($0)") } }
        let executable = try QEMUCommandLine.resolve(qemu[0])
        let arguments = QEMUCommandLine.withProxy(Array(qemu.dropFirst()), fd: 3)
        if !quiet {
            writeStderrLine("ivshmem2 qemu: peer \(device.id) of \(device.configuration.maxPeers), shared memory \(device.layout.geometry.totalSize) bytes, INTx pin A; starting \(executable) \(arguments.joined(separator: " "))")
        }
        let child: SpawnedProcess
        do {
            defer { theirs.closeQuietly() }
            child = try SpawnedProcess.spawn(executable: executable, arguments: arguments, extraDescriptors: [(theirs, 3)])
        }
        let failure = endpoint.serve()  // returns when QEMU closes its end (it exited) or the link fails
        if let failure { writeStderrLine("ivshmem2 qemu: \(failure); the VM keeps running without the device") }
        let status = try child.wait()
        if !quiet || failure != nil { report(endpoint) }
        if failure != nil { throw ExitCode(1) }
        if case .exited(let code) = status, code != 0 { throw ExitCode(code) }
        if case .signaled = status { throw ExitCode(1) }
    }

    private func report(_ endpoint: QEMUProxyEndpoint) {
        let s = endpoint.statistics
        let counts = ProxyCommand.allCases.compactMap { c in s.messages[c].map { "\(c) \($0)" } }.joined(separator: ", ")
        writeStderrLine("ivshmem2 qemu: served \(s.total) messages (\(counts)); undecoded BAR accesses \(s.undecodedAccesses)")
        writeStderrLine("ivshmem2 qemu: INTx pulses \(s.intxPulses), irqfd assertions \(s.irqfdAssertions), resamples \(s.resamples)\(s.pulsesWithoutIRQFD > 0 ? ", pulses before the irqfd arrived \(s.pulsesWithoutIRQFD)" : "")")
        let findings = endpoint.device.findings
        writeStderrLine("ivshmem2 qemu: findings \(findings.count)\(endpoint.device.droppedFindings > 0 ? " (+\(endpoint.device.droppedFindings) dropped)" : "")")
        for f in findings { writeStderrLine("ivshmem2 qemu: finding: \(f)") }
    }
}

/// The QEMU command line `ivshmem2 qemu` runs.
enum QEMUCommandLine {
    /// `name` itself when it holds a slash, else the first executable of that name in PATH.
    static func resolve(_ name: String) throws -> String {
        if name.contains("/") { return name }
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") where access("\(dir)/\(name)", X_OK) == 0 {
            return "\(dir)/\(name)"
        }
        throw ToolFailure("'\(name)' not found in PATH (install QEMU: apt-get install qemu-system-x86)")
    }

    /// `arguments` plus the proxy device on `fd`, and a shared memfd RAM backend of the -m size
    /// when the arguments name no memory backend (the proxy's memory sync needs one).
    static func withProxy(_ arguments: [String], fd: Int32) -> [String] {
        var out = arguments
        if !arguments.contains(where: { $0.contains("memory-backend") }) {
            out += ["-object", "memory-backend-memfd,id=ivshmem2-ram,size=\(ramSize(arguments)),share=on",
                    "-machine", "memory-backend=ivshmem2-ram"]
        }
        out += ["-device", "x-pci-proxy-dev,id=ivshmem2,fd=\(fd)"]
        return out
    }

    /// The RAM size of `-m` (QEMU's default unit is MiB; default 128M), in QEMU's syntax.
    static func ramSize(_ arguments: [String]) -> String {
        guard let i = arguments.firstIndex(where: { $0 == "-m" || $0 == "--m" }), i + 1 < arguments.count else { return "128M" }
        var value = Substring(arguments[i + 1])
        for part in value.split(separator: ",") {
            if part.hasPrefix("size=") { value = part.dropFirst(5); break }
            if !part.contains("=") { value = part; break }
        }
        if let last = value.last, last.isNumber { return "\(value)M" }
        return String(value)
    }
}
