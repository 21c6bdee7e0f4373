import IvshmemLink
import IvshmemPosix
import IvshmemTransport
import IvshmemTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Real QEMU as a v1 peer: Debian's `qemu-system-x86_64` (7.2) with `ivshmem-doorbell` on
/// `ivshmem2 server-v1`, driven through qtest, next to an independent v1 client
/// (``V1ServerConnection``). QEMU's side is observed through MSI-X messages it writes into
/// guest RAM and through its PBA (spec/ivshmem1.md §9).
extension IvshmemServerTestSuite {
@Suite("QEMU ivshmem-doorbell on our v1 server", .enabled(if: QEMUMachine.executable != nil, Comment(rawValue: QEMUMachine.missingReason)))
struct QEMUDoorbellTests {
    /// `ivshmem2 server-v1` and QEMU (peer 0) with `vectors` vectors.
    struct Setup {
        let scratch: ScratchDirectory
        let server: ServerProcess
        let machine: QEMUMachine
        let device: QEMUIvshmem
        var socket: String { server.socketPath }

        init(vectors: Int = 2, serverArguments: [String] = ["--memfd"]) throws {
            scratch = try ScratchDirectory()
            (server, machine) = try Self.start(scratch, vectors: vectors, serverArguments: serverArguments)
            device = try QEMUIvshmem(machine: machine)
        }

        /// `ivshmem2 server-v1 -l 1M -n vectors` in `scratch`, and QEMU with an untouched
        /// `ivshmem-doorbell` on it (peer 0).
        static func start(_ scratch: ScratchDirectory, vectors: Int = 2, serverArguments: [String] = ["--memfd"]) throws -> (ServerProcess, QEMUMachine) {
            let sock = scratch.file("sock")
            let server = try ServerProcess(arguments: ["-F", "-S", sock, "-l", "1M", "-n", "\(vectors)"] + serverArguments,
                                           socketPath: sock, scratch: scratch, subcommand: "server-v1")
            do {
                let machine = try QEMUMachine(deviceArguments: [
                    "-chardev", "socket,id=ivs,path=\(sock)",
                    "-device", "ivshmem-doorbell,chardev=ivs,vectors=\(vectors)",
                ], scratch: scratch)
                return (server, machine)
            } catch {
                _ = try? server.terminate()
                throw error
            }
        }

        /// Enables QEMU's MSI-X with every vector unmasked, then attaches a v1 client (peer 1).
        func attachClientAfterMSIX(vectors: Int = 2) throws -> V1ServerConnection {
            try device.enableMSIX(vectors: vectors)
            let client = try V1ServerConnection(path: socket, vectors: vectors)
            try client.attach()
            return client
        }

        func stop() {
            machine.terminate()
            _ = try? server.terminate()
        }
    }

    /// Rings QEMU's doorbell for (`peer`, `vector`) until `client`'s eventfd fires: QEMU takes a
    /// newcomer's eventfds asynchronously, so the first rings may come before it has them.
    func qemuRings(_ setup: Setup, _ client: V1ServerConnection, vector: Int) throws -> Bool {
        guard let id = client.ownID, let fd = client.ownEventFD(vector: vector) else { return false }
        return Monotonic.poll(timeout: 10, interval: 0.005) {
            (try? setup.device.setRegister(0x0C, UInt32(id) << 16 | UInt32(vector))) != nil
                && (try? fd.wait(timeoutMilliseconds: 20)) == true
                && (try? fd.consume()) != nil
        }
    }

    @Test("V1-CFG-ID-1, V1-CFG-ID-2, V1-CFG-ID-3, V1-CFG-ID-4, V1-CFG-CMD-1, V1-CFG-BAR-1, V1-CFG-BAR-2, V1-CFG-BAR-3, V1-CFG-BAR-4, V1-CFG-CAP-1, V1-CFG-INT-1, V1-MSIX-CAP-1, V1-MSIX-CAP-2: QEMU's ivshmem-doorbell presents the configuration space spec/ivshmem1.md states")
    func configurationSpace() throws {
        let scratch = try ScratchDirectory()
        let (server, machine) = try Setup.start(scratch)
        defer { machine.terminate(); _ = try? server.terminate() }
        let pci = try QEMUPCIFunction.find(vendor: 0x1AF4, device: 0x1110, in: machine)
        let image = try V1ConfigImage(reading: { try pci.config($0, size: $1) }, writing: { try pci.setConfig($0, $1, size: $2) })
        #expect(image.violations(of: .doorbell(vectors: 2, sharedMemorySize: 1 << 20)) == [])
    }

    @Test("V1-REG-POS-1, V1-REG-MASK-1, V1-REG-STAT-1, V1-REG-DB-1, V1-REG-DB-3, V1-REG-DB-4, V1-REG-ACC-2, V1-IRQ-MSIX-1, V1-IRQ-MSIX-4, V1-SHM-BAR-1: QEMU and an independent v1 client ring each other both ways, see each other's shared-memory writes; IVPosition is the ID our server gave")
    func ringBothWays() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let qemu = setup.device
        let client = try setup.attachClientAfterMSIX()
        defer { client.close() }
        #expect(client.ownID == 1)
        #expect(client.eventFDs[0]?.count == 2, "QEMU is peer 0 with two eventfds")
        #expect(try qemu.register(0x08) == 0, "IVPosition is the ID the server gave QEMU")
        try qemu.setRegister(0x08, 0x55)
        #expect(try qemu.register(0x08) == 0, "IVPosition is read-only")

        // Client → QEMU: vector 1, then vector 0; each lands as its own MSI-X message.
        #expect(try client.ring(peer: 0, vector: 1))
        #expect(qemu.waitForMessage(vector: 1))
        #expect(try client.ring(peer: 0, vector: 0))
        #expect(qemu.waitForMessage(vector: 0))
        #expect(try qemu.register(0x04) == 0, "MSI-X delivery leaves IntrStatus alone")
        // QEMU → client on both vectors; QEMU → itself.
        #expect(try qemuRings(setup, client, vector: 0))
        #expect(try qemuRings(setup, client, vector: 1))
        try qemu.setRegister(0x0C, 0 << 16 | 1)
        #expect(qemu.waitForMessage(vector: 1), "a doorbell to the own ID interrupts the device itself")

        // Shared memory, both ways.
        let memory = try client.mapSharedMemory()
        memory.base.storeBytes(of: UInt32(0xFEED_0001), toByteOffset: 0x100, as: UInt32.self)
        #expect(try qemu.memory(0x100) == 0xFEED_0001)
        try qemu.setMemory(0xF_FFFC, 0xBEEF_0002)
        #expect(memory.base.load(fromByteOffset: 0xF_FFFC, as: UInt32.self) == 0xBEEF_0002)

        // The other registers.
        try qemu.setRegister(0x00, 0xFFFF_FFFF)
        #expect(try qemu.register(0x00) == 0xFFFF_FFFF)
        try qemu.setRegister(0x04, 0x0000_0005)
        #expect(try qemu.register(0x04) == 5)
        #expect(try qemu.register(0x04) == 0, "reading IntrStatus cleared it")
        #expect(try qemu.register(0x0C) == 0)
        try qemu.setRegister(0x10, 0x1234)
        #expect(try qemu.register(0x10) == 0 && qemu.register(0xFC) == 0)
        #expect(client.errors.isEmpty)
    }

    @Test("V1-IRQ-MSIX-2, V1-MSIX-PBA-1, V1-IRQ-MSIX-3: a masked vector latches its PBA bit and unmasking delivers it; PBA writes are ignored; with MSI-X disabled QEMU drains the event and drops it")
    func maskingAndPBA() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let qemu = setup.device
        let client = try setup.attachClientAfterMSIX()
        defer { client.close() }
        let qemuVector0 = try #require(client.eventFDs[0]?[0])
        /// Whether QEMU has read the eventfd (it drains it on every event).
        func drained() -> Bool { Monotonic.poll(timeout: 10) { (try? qemuVector0.fd.waitReadable(timeoutMilliseconds: 0)) == false } }

        try qemu.setMasked(vector: 0, true)
        #expect(try client.ring(peer: 0, vector: 0))
        #expect(drained())
        #expect(Monotonic.poll(timeout: 10) { (try? qemu.pendingBits()) == 1 }, "PBA bit 0 latched")
        #expect(try !qemu.messageArrived(vector: 0))
        try qemu.machine.writel(QEMUIvshmem.bar1 + 0x800, 0)
        #expect(try qemu.pendingBits() == 1, "a PBA write changes nothing")
        try qemu.setMasked(vector: 0, false)
        #expect(qemu.waitForMessage(vector: 0), "unmasking sent the pending message")
        #expect(try qemu.pendingBits() == 0)

        try qemu.setMSIXEnabled(false)
        #expect(try client.ring(peer: 0, vector: 0))
        #expect(drained(), "QEMU consumed the event while MSI-X was off")
        try qemu.setMSIXEnabled(true)
        #expect(try qemu.pendingBits() == 0)
        #expect(try client.ring(peer: 0, vector: 1))
        #expect(qemu.waitForMessage(vector: 1))
        #expect(try !qemu.messageArrived(vector: 0), "the event from while MSI-X was off is gone")
    }

    @Test("V1-WIRE-CLI-7, V1-REG-DB-2, V1-WIRE-GONE-1: after a peer leaves, QEMU's doorbells to it are dropped; a later peer gets a new ID and is rung")
    func departure() throws {
        let setup = try Setup(serverArguments: ["-M", "ivs2-qemu-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"])
        defer { setup.stop() }
        let qemu = setup.device
        let leaver = try V1ServerConnection(path: setup.socket, vectors: 2)
        defer { leaver.close() }
        try leaver.attach()
        #expect(try qemuRings(setup, leaver, vector: 1))
        leaver.leave()
        // The server sees the hang-up only when the last copy of the socket is closed (a process
        // that another thread spawns at that moment holds one until its exec), so a newcomer may
        // be introduced to QEMU before the departure: wait for QEMU to drop the peer instead of
        // assuming an order. A qtest write returns after QEMU's doorbell handler ran, so a
        // doorbell QEMU still delivers is readable at once.
        let leaverFD = try #require(leaver.ownEventFD(vector: 1))
        let dropped = Monotonic.poll(timeout: 10, interval: 0.005) {
            guard (try? qemu.setRegister(0x0C, 1 << 16 | 1)) != nil else { return false }
            guard (try? leaverFD.wait(timeoutMilliseconds: 0)) == true else { return true }
            _ = try? leaverFD.consume()
            return false
        }
        #expect(dropped, "QEMU still rings the departed peer 10 s after it left")
        try qemu.setRegister(0x0C, 1 << 16 | 1)
        #expect(try !leaverFD.wait(timeoutMilliseconds: 300), "QEMU dropped the doorbell to the departed peer")
        let newcomer = try V1ServerConnection(path: setup.socket, vectors: 2)
        defer { newcomer.close() }
        try newcomer.attach()
        #expect(newcomer.ownID == 2, "IDs in turn: the departed ID 1 is not reused at once")
        #expect(try qemuRings(setup, newcomer, vector: 0))
        try qemu.setRegister(0x0C, 1 << 16 | 1)
        #expect(try !leaverFD.wait(timeoutMilliseconds: 300), "doorbells to the departed ID stay dropped after a newcomer")
        #expect(setup.machine.log.isEmpty || !setup.machine.log.contains("invalid"), "\(setup.machine.log)")
    }

    @Test("V1-REG-POS-2: QEMU's ivshmem-plain (no server) has no MSI-X, no BAR1, reads IVPosition 0")
    func plain() throws {
        let scratch = try ScratchDirectory()
        let machine = try QEMUMachine(deviceArguments: [
            "-object", "memory-backend-memfd,id=shm,size=1M,share=on",
            "-device", "ivshmem-plain,memdev=shm",
        ], scratch: scratch)
        defer { machine.terminate() }
        let pci = try QEMUPCIFunction.find(vendor: 0x1AF4, device: 0x1110, in: machine)
        let image = try V1ConfigImage(reading: { try pci.config($0, size: $1) }, writing: { try pci.setConfig($0, $1, size: $2) })
        #expect(image.violations(of: .plain(sharedMemorySize: 1 << 20)) == [])
        let device = try QEMUIvshmem(machine: machine)
        #expect(try device.register(0x08) == 0)
    }
}
}
