#if canImport(Glibc)
import Glibc
#endif
import IvshmemModel
import IvshmemPosix
import IvshmemQEMUProxy
import IvshmemSync
import Testing

/// The installed QEMU, if any (`make guest` installs it; these checks are skipped without it).
private let qemuPath: String? = ["/usr/bin/qemu-system-x86_64", "/usr/local/bin/qemu-system-x86_64"].first { access($0, X_OK) == 0 }

/// The endpoint against a real QEMU (7.2) that realises `x-pci-proxy-dev` on it: no guest runs
/// (`-S`), but QEMU probes the function while realising it and resets it before it would start.
@Suite("QEMU proxy endpoint: real QEMU", .enabled(if: qemuPath != nil, "qemu-system-x86_64 is not installed"))
struct RealQEMUTests {
    @Test("QEMU realises the proxy against the endpoint: irqfd, identity and BAR probe through the model, reset; QEMU's exit ends the link cleanly (CFG-ID-1, CFG-BAR-5, DEV-RST-5)")
    func realise() throws {
        let fabric = try LocalFabric(template: DeviceConfiguration(interrupts: .intx(pin: 1)))
        let device = try fabric.addDevice(id: 0)
        let (ours, theirs) = try UnixSocket.pair()
        let endpoint = QEMUProxyEndpoint(device: device, socket: ours)
        let qemu: SpawnedProcess
        do {
            defer { theirs.closeQuietly() }
            qemu = try SpawnedProcess.spawn(
                executable: try #require(qemuPath),
                arguments: ["-machine", "q35,memory-backend=mem", "-object", "memory-backend-memfd,id=mem,size=64M,share=on",
                            "-accel", "tcg", "-S", "-nodefaults", "-display", "none", "-monitor", "none", "-serial", "none",
                            "-device", "x-pci-proxy-dev,id=ivshmem2,fd=3"],
                standardInput: .null, standardOutput: .null, standardError: .pipe,
                extraDescriptors: [(theirs, 3)])
        }
        let served = Locked<(done: Bool, error: ProxyLinkError?)>((false, nil))
        let thread = try ServingThread { let e = endpoint.serve(); served.withLock { $0 = (true, e) } }
        // QEMU resets the machine once it is built, after probing: then the device is set up.
        let reset = Monotonic.poll(timeout: 60) { endpoint.statistics.messages[.deviceReset] != nil }
        try qemu.signal(SIGTERM)
        var status = try qemu.waitWithTimeout(seconds: 30)
        if status == nil {
            try? qemu.signal(SIGKILL)
            status = try? qemu.wait()
            Issue.record("QEMU did not end within 30 s of SIGTERM")
        }
        let stderr = String(decoding: (try? qemu.standardError?.readAll()) ?? [], as: UTF8.self)
        qemu.closePipes()
        #expect(reset, "QEMU never reset the device; its stderr: \(stderr)")
        thread.join()
        let end = served.withLock { $0 }
        #expect(end.done && end.error == nil, "\(String(describing: end.error))")  // QEMU's exit is a clean end of the link
        let s = endpoint.statistics
        #expect(s.messages[.setIRQFD] == 1)
        #expect((s.messages[.configRead] ?? 0) >= 18)   // identity (4) and 7 regions × 2
        #expect((s.messages[.configWrite] ?? 0) >= 14)  // 7 regions × (all-ones, restore)
        #expect((s.messages[.syncSystemMemory] ?? 0) >= 1)
        #expect(device.findings.isEmpty)
        #expect(device.configRead(offset: 0x04, size: 2) == 0)  // reset: Command 0
    }
}

/// A plain thread for a blocking call (Foundation.Process-free, signal mask untouched).
final class ServingThread: @unchecked Sendable {
    private var thread = pthread_t()
    private let body: @Sendable () -> Void

    init(_ body: @escaping @Sendable () -> Void) throws {
        self.body = body
        let box = Unmanaged.passRetained(self)
        let rc = pthread_create(&thread, nil, { raw in
            Unmanaged<ServingThread>.fromOpaque(raw!).takeRetainedValue().body()
            return nil
        }, box.toOpaque())
        if rc != 0 {
            box.release()
            throw SystemCallError(call: "pthread_create", errno: Errno(rawValue: rc))
        }
    }

    func join() { pthread_join(thread, nil) }
}
