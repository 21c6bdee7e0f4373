#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import IvshmemPosix
import IvshmemVirtio

/// `ivshmem2 virtio`: virtio devices over ivshmem between two emulated peers (spec/virtio-ivshmem.md).
struct VirtioCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "virtio",
        abstract: "Virtio devices over ivshmem: a console and a block device, back-end or front-end.",
        discussion: """
            Start a server with a virtio protocol and two peers; the back-end attaches first
            (it becomes peer 0, which the server gives the back-end protocol):
              ivshmem2 server -F -S /tmp/vio.sock -n 2 -V 2 -l 1M -P 0xc003    # 0xc002 for block
              ivshmem2 virtio console --backend -S /tmp/vio.sock
              ivshmem2 virtio console --frontend -S /tmp/vio.sock
            Transport violations either side sees are printed on standard error as
            'finding: [VIRTIO-…] …'.
            """,
        subcommands: [VirtioConsoleCommand.self, VirtioBlockCommand.self])
}

/// Options both devices share.
struct VirtioRoleOptions: ParsableArguments {
    @Flag(help: "Serve the device (peer 0, protocol C000h-FFFFh).") var backend = false
    @Flag(help: "Drive the device (peer 1, protocol 8000h-BFFFh).") var frontend = false
    @Option(name: [.customShort("S"), .long], help: "Server socket path.") var socket: String = "/tmp/ivshmem_socket"
    @Option(help: "Behaviour profile of the emulated device: spec, jailhouse or qemu-rfc.") var profile: String = "spec"
    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        guard backend != frontend else { throw ValidationError("give exactly one of --backend and --frontend") }
    }

    func attach() throws -> VirtioEndpoint {
        logging.apply()
        let endpoint: VirtioEndpoint
        do { endpoint = try VirtioEndpoint.attach(socketPath: socket, profile: profile) } catch {
            throw ToolFailure("\(error)")
        }
        endpoint.findings.onFinding { f in writeStderr("finding: \(f)\n") }
        return endpoint
    }

    /// Runs `backend` on its own loop until SIGINT/SIGTERM.
    func serve(_ backend: VirtioBackend, input: FileDescriptor? = nil, onInput: (@Sendable ([UInt8], VirtioBackend) -> Void)? = nil) throws {
        try Signals.whileWatchingTermination { stop in
            let runner = try BackendRunner(backend: backend, input: input, onInput: onInput)
            runner.start()
            if !logging.quiet { writeStderr("virtio: back-end for device \(backend.device.deviceID) on \(socket); peer \(backend.endpoint.id)\n") }
            while !Signals.terminationRequested { _ = try? stop.wait(timeoutMilliseconds: 1000) }
            runner.stop()
        }
        backend.endpoint.setState(0)
        backend.endpoint.close()
    }
}

/// `ivshmem2 virtio console`: bytes between standard input/output and the other side.
struct VirtioConsoleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "console",
        abstract: "A virtio console: standard input goes to the other side, what it sends goes to standard output.")

    @OptionGroup var side: VirtioRoleOptions
    @Option(help: "Columns the back-end reports (VIRTIO_CONSOLE_F_SIZE).") var columns: UInt16 = 80
    @Option(help: "Rows the back-end reports.") var rows: UInt16 = 25

    func run() throws {
        try Signals.ignoreBrokenPipe()
        let endpoint = try side.attach()
        if side.backend {
            let console = ConsoleBackEnd(output: .standardOutput, columns: columns, rows: rows)
            let backend = try VirtioBackend(endpoint: endpoint, device: console)
            try side.serve(backend, input: .standardInput) { bytes, b in console.feed(bytes, backend: b) }
            return
        }
        defer { endpoint.close() }
        let driver = try ConsoleDriver(frontend: VirtioFrontend(endpoint: endpoint))
        writeStderr("virtio: console front-end, \(driver.columns)x\(driver.rows)\n")
        try Signals.whileWatchingTermination { stop in
            let epoll = try Epoll()
            defer { epoll.close() }
            try epoll.add(.standardInput, events: .readable, token: 0)
            try epoll.add(endpoint.interrupts.fd, events: .readable, token: 1)
            try epoll.add(stop.fd, events: .readable, token: 2)
            var buffer = [UInt8](repeating: 0, count: 4096)
            while !Signals.terminationRequested {
                var inputReady = false
                _ = try epoll.wait(timeoutMilliseconds: 1000) { token, _ in if token == 0 { inputReady = true } }
                _ = endpoint.takeInterrupts()
                if inputReady {
                    let n = try buffer.withUnsafeMutableBytes { try FileDescriptor.standardInput.read(into: $0) }
                    if n > 0 { try driver.write(Array(buffer[0..<n])) } else { try epoll.remove(.standardInput) }
                }
                let received = driver.drain()
                if !received.isEmpty { try FileDescriptor.standardOutput.writeAll(received) }
            }
        }
        driver.frontend.remove()
    }
}

/// `ivshmem2 virtio block`: a file as a block device, or a front-end that checks it.
struct VirtioBlockCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "block",
        abstract: "A virtio block device backed by a file (--backend), or a front-end that writes a pattern and reads it back (--frontend).")

    @OptionGroup var side: VirtioRoleOptions
    @Option(help: "The image file (--backend); its size in 512-byte sectors is the capacity.") var image: String?
    @Option(help: "Front-end: bytes to write and read back from sector 0 (whole sectors).") var bytes: Int = 1 << 20
    @Option(help: "Front-end: bytes per request (whole sectors, at most the device's size_max).") var request: Int = 1 << 16

    func run() throws {
        let endpoint = try side.attach()
        if side.backend {
            guard let image else { throw ValidationError("--backend needs --image FILE") }
            let fd: FileDescriptor
            do { fd = try FileDescriptor.open(image, flags: O_RDWR) } catch { throw ToolFailure("cannot open the image \(image): \(error)") }
            let backend = try VirtioBackend(endpoint: endpoint, device: BlockBackEnd(image: fd, imageBytes: UInt64(try fd.size())))
            try side.serve(backend)
            return
        }
        defer { endpoint.close() }
        let disk = try BlockDriver(frontend: VirtioFrontend(endpoint: endpoint), maxTransfer: request)
        guard bytes % 512 == 0, request % 512 == 0, request <= disk.maxTransfer, UInt64(bytes / 512) <= disk.capacitySectors else {
            throw ValidationError("--bytes and --request must be whole sectors, --request at most \(disk.maxTransfer), --bytes at most \(disk.capacitySectors * 512)")
        }
        var sector: UInt64 = 0
        var done = 0
        while done < bytes {
            let n = min(request, bytes - done)
            let pattern = (0..<n).map { UInt8(truncatingIfNeeded: ($0 + done) &* 31 &+ 7) }
            try disk.write(sector: sector, bytes: pattern)
            guard try disk.read(sector: sector, count: n) == pattern else { throw ValidationError("sector \(sector): read back differs") }
            sector += UInt64(n / 512)
            done += n
        }
        try disk.flush()
        writeStdout("virtio-blk: \(bytes) bytes written and read back in \(request)-byte requests; capacity \(disk.capacitySectors) sectors\n")
        disk.frontend.remove()
    }
}
