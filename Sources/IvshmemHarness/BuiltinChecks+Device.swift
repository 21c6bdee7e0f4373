#if canImport(Glibc)
import Glibc
#endif
import IvshmemModel
import IvshmemPosix
import IvshmemTransport
import IvshmemWire
import IvshmemSync

extension BuiltinChecks {
    /// Built-in conformance checks for the device requirements that scripts cannot express:
    /// construction-parameter validation (DEV-CFG-*) and the in-process link (IRQ-COAL-1).
    /// Expected values come from the spec text, not from the profile tables, so a wrong table
    /// makes a check fail.
    static let deviceChecks: [BuiltinCheck] = [
        BuiltinCheck(name: "device-in-process-no-coalescing", summary: "IRQ-COAL-1: n doorbells and n state changes in an in-process link give n deliveries") { ctx in
            let fabric = try LocalFabric(template: DeviceConfiguration(profile: ctx.profile, maxPeers: 4, vectors: 2, rwSectionSize: 0x1000, outputSectionSize: 0x1000))
            let a = try fabric.addDevice()
            let b = try fabric.addDevice()
            let sink = CountingSink()
            b.interruptSink = sink
            DeviceCheckSupport.makeReady(b)
            for _ in 0..<5 { a.writeRegister(a.registerOffsets.doorbell, BAR0Registers.doorbellValue(peer: b.id, vector: 1)) }
            try DeviceCheckSupport.expect("5 MSI-X messages on vector 1 after 5 doorbells", sink.count(vector: 1), 5)
            for v in UInt32(1)...3 { a.writeRegister(a.registerOffsets.state, v) }
            try DeviceCheckSupport.expect("3 MSI-X messages on vector 0 after 3 state changes", sink.count(vector: 0), 3)
            try DeviceCheckSupport.expect("no other interrupts", sink.total, 8)
        },
        BuiltinCheck(name: "device-cfg-vectors", summary: "DEV-CFG-1: V in 1..profile limit (spec 1024, jailhouse 16, qemu-rfc 1024), V = 1 in INTx mode") { ctx in
            let limit = DeviceCheckSupport.vectorLimit[ctx.profile] ?? 1024
            try DeviceCheckSupport.rejected(DeviceConfiguration(profile: ctx.profile, vectors: 0), parameter: "vectors")
            try DeviceCheckSupport.accepted(DeviceConfiguration(profile: ctx.profile, vectors: 1))
            try DeviceCheckSupport.accepted(DeviceConfiguration(profile: ctx.profile, vectors: limit))
            try DeviceCheckSupport.rejected(DeviceConfiguration(profile: ctx.profile, vectors: limit + 1), parameter: "vectors")
            for bad in [0, limit + 1] {  // an in-process link's template is checked the same way
                do {
                    _ = try LocalFabric(template: DeviceConfiguration(profile: ctx.profile, vectors: bad))
                    throw CheckFailure(expected: "a link template with \(bad) vectors to be refused", actual: "it was accepted")
                } catch let e as DeviceConfigurationError {
                    try DeviceCheckSupport.expect("the link template's error to name vectors", e.parameter, "vectors")
                }
            }
            if ctx.profile != "qemu-rfc" {
                try DeviceCheckSupport.accepted(DeviceConfiguration(profile: ctx.profile, vectors: 1, interrupts: .intx(pin: 1)))
                try DeviceCheckSupport.rejected(DeviceConfiguration(profile: ctx.profile, vectors: 2, interrupts: .intx(pin: 1)), parameter: "vectors")
            }
        },
        BuiltinCheck(name: "device-cfg-max-peers", summary: "DEV-CFG-2: N in 2..65536") { ctx in
            try DeviceCheckSupport.rejected(DeviceConfiguration(profile: ctx.profile, maxPeers: 1), parameter: "maxPeers")
            try DeviceCheckSupport.rejected(DeviceConfiguration(profile: ctx.profile, maxPeers: 0), parameter: "maxPeers")
            try DeviceCheckSupport.accepted(DeviceConfiguration(profile: ctx.profile, maxPeers: 2))
            try DeviceCheckSupport.accepted(DeviceConfiguration(profile: ctx.profile, maxPeers: 65536))
            try DeviceCheckSupport.rejected(DeviceConfiguration(profile: ctx.profile, maxPeers: 65537), parameter: "maxPeers")
            try DeviceCheckSupport.rejected(DeviceConfiguration(profile: ctx.profile, maxPeers: .max), parameter: "maxPeers")
        },
        BuiltinCheck(name: "device-cfg-id", summary: "DEV-CFG-3: the ID must be below N") { ctx in
            try DeviceCheckSupport.accepted(DeviceConfiguration(profile: ctx.profile, id: 3, maxPeers: 4))
            try DeviceCheckSupport.rejected(DeviceConfiguration(profile: ctx.profile, id: 4, maxPeers: 4), parameter: "id")
            try DeviceCheckSupport.rejected(DeviceConfiguration(profile: ctx.profile, id: 70000, maxPeers: 4), parameter: "id")
            try DeviceCheckSupport.rejected(DeviceConfiguration(profile: ctx.profile, id: 2, maxPeers: 2), parameter: "id")
            try DeviceCheckSupport.rejected(DeviceConfiguration(profile: ctx.profile, id: 65536, maxPeers: 65536, rwSectionSize: 0), parameter: "id")
            let last = try DeviceCheckSupport.accepted(DeviceConfiguration(profile: ctx.profile, id: 65535, maxPeers: 65536, rwSectionSize: 0))
            try DeviceCheckSupport.expect("the ID register of peer 65535", last.readRegister(last.registerOffsets.id), 65535)
        },
        BuiltinCheck(name: "device-cfg-section-sizes", summary: "DEV-CFG-4: ST, RW, OUT page multiples; ST per SHM-LAYOUT-8") { ctx in
            let p = ctx.profile
            try DeviceCheckSupport.rejected(DeviceConfiguration(profile: p, rwSectionSize: 0x800), parameter: "rwSectionSize")
            try DeviceCheckSupport.rejected(DeviceConfiguration(profile: p, rwSectionSize: 0x1001), parameter: "rwSectionSize")
            try DeviceCheckSupport.rejected(DeviceConfiguration(profile: p, outputSectionSize: 0x800), parameter: "outputSectionSize")
            try DeviceCheckSupport.rejected(DeviceConfiguration(profile: p, maxPeers: 2, stateTableSize: 0x2000), parameter: "stateTableSize")
            try DeviceCheckSupport.rejected(DeviceConfiguration(profile: p, maxPeers: 2, stateTableSize: 0x800), parameter: "stateTableSize")
            try DeviceCheckSupport.rejected(DeviceConfiguration(profile: p, maxPeers: 2000, stateTableSize: 0x1000), parameter: "stateTableSize")
            try DeviceCheckSupport.accepted(DeviceConfiguration(profile: p, maxPeers: 2, stateTableSize: 0x1000))
            try DeviceCheckSupport.accepted(DeviceConfiguration(profile: p, maxPeers: 1024, stateTableSize: 0x1000))
            try DeviceCheckSupport.accepted(DeviceConfiguration(profile: p, maxPeers: 1025, stateTableSize: 0x2000))
            try DeviceCheckSupport.accepted(DeviceConfiguration(profile: p, maxPeers: 2, rwSectionSize: 0, outputSectionSize: 0x2000))
        },
        BuiltinCheck(name: "device-cfg-backing-memory", summary: "DEV-CFG-5: the shared memory must hold ST + RW + N·OUT bytes") { ctx in
            let c = DeviceConfiguration(profile: ctx.profile, maxPeers: 4, rwSectionSize: 0x2000, outputSectionSize: 0x1000)
            let total = 0x1000 + 0x2000 + 4 * 0x1000
            try DeviceCheckSupport.accepted(c, memorySize: total)
            try DeviceCheckSupport.rejected(c, memorySize: total - 0x1000, parameter: "sharedMemory")
            try DeviceCheckSupport.rejected(c, memorySize: total - 1, parameter: "sharedMemory")
        },
        BuiltinCheck(name: "device-cfg-protocol", summary: "DEV-CFG-6: a protocol number above FFFFh is refused (a server announcing one), FFFFh accepted") { ctx in
            try DeviceCheckSupport.attachToFakeServer(profile: ctx.profile, protocol: 0xFFFF, expectError: nil)
            try DeviceCheckSupport.attachToFakeServer(profile: ctx.profile, protocol: 0x1_0000, expectError: "protocol")
            try DeviceCheckSupport.attachToFakeServer(profile: ctx.profile, protocol: 0x1_C001, expectError: "protocol")
        },
        BuiltinCheck(name: "device-cfg-profile-modes", summary: "DEV-CFG-7: INTx only in spec and jailhouse, an I/O register region only in spec") { ctx in
            let p = ctx.profile
            let intx = DeviceConfiguration(profile: p, vectors: 1, interrupts: .intx(pin: 1))
            let io = DeviceConfiguration(profile: p, registerSpace: .io)
            if p == "qemu-rfc" { try DeviceCheckSupport.rejected(intx, parameter: "interrupts") } else { try DeviceCheckSupport.accepted(intx) }
            if p == "spec" { try DeviceCheckSupport.accepted(io) } else { try DeviceCheckSupport.rejected(io, parameter: "registerSpace") }
        },
        BuiltinCheck(name: "device-cfg-link-match", summary: "DEV-CFG-8: a device joining an in-process link must match N, V, ST, RW, OUT, protocol; its ID must be free") { ctx in
            let fabric = try LocalFabric(template: DeviceConfiguration(profile: ctx.profile, maxPeers: 4, vectors: 2, protocolType: 0x8001, rwSectionSize: 0x1000, outputSectionSize: 0x1000))
            _ = try fabric.addDevice()
            let mismatches: [(String, (inout DeviceConfiguration) -> Void)] = [
                ("maxPeers", { $0.maxPeers = 8 }), ("vectors", { $0.vectors = 1 }), ("stateTableSize", { $0.stateTableSize = 0x2000 }),
                ("rwSectionSize", { $0.rwSectionSize = 0x2000 }), ("outputSectionSize", { $0.outputSectionSize = 0x2000 }),
                ("protocolType", { $0.protocolType = 0x8002 }),
            ]
            for (param, change) in mismatches {
                do {
                    let d = try fabric.addDevice(configure: change)
                    throw CheckFailure(expected: "joining with a different \(param) to fail", actual: "joined as peer \(d.id)")
                } catch let e as DeviceConfigurationError {
                    try DeviceCheckSupport.expect("the error to name \(param)", e.parameter, param)
                }
            }
            do {
                let d = try fabric.addDevice(id: 0)
                throw CheckFailure(expected: "joining with the ID of an active peer to fail", actual: "joined as peer \(d.id)")
            } catch let e as DeviceConfigurationError {
                try DeviceCheckSupport.expect("the error to name id", e.parameter, "id")
            }
            let counterpart = try fabric.addDevice { $0.protocolType = 0xC001 }  // the other virtio side (PROTO-VIRTIO-1)
            try DeviceCheckSupport.expect("the virtio counterpart to join as peer 1", counterpart.id, 1)
            let same = try fabric.addDevice()
            try DeviceCheckSupport.expect("a matching device to join as peer 2", same.id, 2)
            _ = try fabric.addDevice()  // peer 3: the link is full
            do {
                let d = try fabric.addDevice()
                throw CheckFailure(expected: "joining a full link to fail", actual: "joined as peer \(d.id)")
            } catch let e as DeviceConfigurationError {
                try DeviceCheckSupport.expect("the error to name maxPeers", e.parameter, "maxPeers")
            }
            fabric.removeDevice(id: 0)
            try DeviceCheckSupport.expect("a device joining after peer 0 left to get ID 0", try fabric.addDevice().id, 0)
        },
        BuiltinCheck(name: "device-cfg-failure-creates-nothing", summary: "DEV-CFG-9: a failed construction creates no device and names the failed check") { ctx in
            let fabric = try LocalFabric(template: DeviceConfiguration(profile: ctx.profile, maxPeers: 4, vectors: 2, rwSectionSize: 0x1000, outputSectionSize: 0x1000))
            let a = try fabric.addDevice()
            do {
                _ = try fabric.addDevice(id: 1) { $0.vectors = 3 }
                throw CheckFailure(expected: "a device with 3 vectors to be refused", actual: "it joined")
            } catch let e as DeviceConfigurationError {
                try DeviceCheckSupport.expect("the error to name the vectors check", e.parameter, "vectors")
                guard e.description.contains("vectors") else { throw CheckFailure(expected: "the message to mention vectors", actual: e.description) }
            }
            guard fabric.device(1) == nil, !fabric.isActive(1) else { throw CheckFailure(expected: "no peer 1 after the refused join", actual: "peer 1 is active") }
            // Nobody got interrupted, and the ID is still free.
            let sink = CountingSink()
            a.interruptSink = sink
            DeviceCheckSupport.makeReady(a)
            a.writeRegister(a.registerOffsets.doorbell, BAR0Registers.doorbellValue(peer: 1, vector: 0))
            try DeviceCheckSupport.expect("interrupts after a doorbell to the refused peer's ID", sink.total, 0)
            let b = try fabric.addDevice()
            try DeviceCheckSupport.expect("the next device to get ID 1", b.id, 1)
            // A device that cannot be built at all: the initializer throws, naming the check.
            do {
                _ = try IvshmemDevice(configuration: DeviceConfiguration(profile: ctx.profile, id: 9, maxPeers: 4), sharedMemory: SharedMemory(allocating: 0x10000), link: nil)
                throw CheckFailure(expected: "ID 9 of 4 to be refused", actual: "a device was built")
            } catch let e as DeviceConfigurationError {
                try DeviceCheckSupport.expect("the error to name id", e.parameter, "id")
            }
        },
    ]
}

/// Counts MSI-X messages per vector and INTx edges.
final class CountingSink: InterruptSink, @unchecked Sendable {
    private let counts = Locked<[Int: Int]>([:])
    func msixMessage(from device: IvshmemDevice, vector: Int, address: UInt64, data: UInt32) { counts.withLock { $0[vector, default: 0] += 1 } }
    func intxEdge(from device: IvshmemDevice, pin: UInt8) { counts.withLock { $0[-1, default: 0] += 1 } }
    func count(vector: Int) -> Int { counts.withLock { $0[vector] ?? 0 } }
    var total: Int { counts.withLock { $0.values.reduce(0, +) } }
}

enum DeviceCheckSupport {
    /// The MSI-X vector limits of spec section 8 (IRQ-VEC-2).
    static let vectorLimit = ["spec": 1024, "jailhouse": 16, "qemu-rfc": 1024]

    static func expect<T: Equatable>(_ what: String, _ actual: T, _ expected: T) throws {
        guard actual == expected else { throw CheckFailure(expected: "\(what): \(expected)", actual: "\(actual)") }
    }

    /// What `setup=ready` does, directly on the device: decode and bus mastering on, entry v =
    /// (FEE00000h, data v) unmasked, MSI-X on, Interrupt Control 1.
    static func makeReady(_ d: IvshmemDevice) {
        d.configWrite(offset: PCIConfig.command, size: 2, value: UInt32(PCICommand([.memorySpace, .busMaster]).rawValue))
        if let cap = d.layout.capabilities.first(where: { $0.kind == .msix }) {
            for v in 0..<d.configuration.vectors {
                d.barWrite(1, offset: UInt64(v * 16), size: 4, value: 0xFEE0_0000)
                d.barWrite(1, offset: UInt64(v * 16 + 8), size: 4, value: UInt64(v))
                d.barWrite(1, offset: UInt64(v * 16 + 12), size: 4, value: 0)
            }
            d.configWrite(offset: cap.offset + MSIXControl.capabilityOffset, size: 2, value: UInt32(MSIXControl.enable.rawValue))
        }
        d.writeRegister(d.registerOffsets.interruptControl, InterruptControlBits.enable)
    }

    static func build(_ c: DeviceConfiguration, memorySize: Int?) throws -> IvshmemDevice {
        let size = memorySize ?? Int((try? c.geometry().totalSize) ?? 0x10000)
        return try IvshmemDevice(configuration: c, sharedMemory: SharedMemory(allocating: size), link: nil)
    }

    static func describe(_ c: DeviceConfiguration) -> String {
        "profile \(c.profileName), id \(c.id), N \(c.maxPeers), V \(c.vectors), RW 0x\(String(c.rwSectionSize, radix: 16)), OUT 0x\(String(c.outputSectionSize, radix: 16))"
            + (c.stateTableSize.map { ", ST 0x\(String($0, radix: 16))" } ?? "") + ", \(c.interrupts), \(c.registerSpace)"
    }

    @discardableResult
    static func accepted(_ c: DeviceConfiguration, memorySize: Int? = nil) throws -> IvshmemDevice {
        do { return try build(c, memorySize: memorySize) } catch {
            throw CheckFailure(expected: "a device to be built (\(describe(c)))", actual: "\(error)")
        }
    }

    static func rejected(_ c: DeviceConfiguration, memorySize: Int? = nil, parameter: String) throws {
        do {
            _ = try build(c, memorySize: memorySize)
        } catch let e as DeviceConfigurationError {
            guard e.parameter == parameter else {
                throw CheckFailure(expected: "construction refused naming \(parameter) (\(describe(c)))", actual: e.description)
            }
            return
        } catch {
            throw CheckFailure(expected: "construction refused naming \(parameter) (\(describe(c)))", actual: "\(error)")
        }
        throw CheckFailure(expected: "construction refused naming \(parameter) (\(describe(c)))", actual: "a device was built")
    }

    /// A one-shot fake server: sends INIT (id 0, N 2, V 1, OUT 0, the given protocol) with an
    /// 8 KiB memfd and the device's own eventfd (the end of the introduction, WIRE-CLI-20),
    /// then keeps the connection until the attach returned.
    static func attachToFakeServer(profile: String, protocol: UInt32, expectError: String?) throws {
        let dir = try FileSystem.makeTemporaryDirectory(template: "/tmp/ivshmem2-check.XXXXXX")
        defer { FileSystem.removeDirectoryTree(dir) }
        let path = dir + "/fake.sock"
        let listener = try UnixSocket.listen(path: path, nonBlocking: false)
        defer { listener.closeQuietly() }
        let memory = try IvshmemPosix.SharedMemory.createAnonymous(size: 0x2000)
        defer { memory.closeQuietly() }
        let init_ = WireMessage.initial(InitialInfo(id: 0, maxPeers: 2, vectors: 1, protocol: `protocol`, outputSectionSize: 0)).encode()
        let accepted = Locked<FileDescriptor?>(nil)
        let server = CheckThread {
            guard let c = try? UnixSocket.accept(listener, nonBlocking: false) else { return }
            accepted.withLock { $0 = c }
            _ = try? UnixSocket.sendMessage(on: c, bytes: init_, fds: [memory])
            guard let own = try? EventFD.create() else { return }
            defer { own.close() }
            _ = try? UnixSocket.sendMessage(on: c, bytes: WireMessage.eventFD(id: 0, vector: 0).encode(), fds: [own.fd])
        }
        defer {
            server.join()
            accepted.withLock { $0?.closeQuietly() }
        }
        let what = "an INIT with protocol 0x\(String(`protocol`, radix: 16))"
        do {
            let link = try AttachedDevice.attach(socketPath: path, options: AttachOptions(profile: profile))
            link.close()
            if let expectError { throw CheckFailure(expected: "\(what) to be refused with an error mentioning \"\(expectError)\"", actual: "attached") }
        } catch let f as CheckFailure {
            throw f
        } catch {
            guard let expectError else { throw CheckFailure(expected: "\(what) to be accepted", actual: "\(error)") }
            guard "\(error)".contains(expectError) else {
                throw CheckFailure(expected: "\(what) to be refused with an error mentioning \"\(expectError)\"", actual: "\(error)")
            }
        }
    }
}

/// A plain OS thread for a check's helper (a fake server).
final class CheckThread: @unchecked Sendable {
    private var thread = pthread_t()
    private let body: @Sendable () -> Void

    init(_ body: @escaping @Sendable () -> Void) {
        self.body = body
        let box = Unmanaged.passRetained(self)
        pthread_create(&thread, nil, { arg in
            let me = Unmanaged<CheckThread>.fromOpaque(arg!).takeRetainedValue()
            me.body()
            return nil
        }, box.toOpaque())
    }

    func join() { pthread_join(thread, nil) }
}
