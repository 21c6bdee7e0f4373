import IvshmemPosix
import IvshmemServer
import IvshmemSync
import IvshmemVirtio
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// A back-end and a front-end of one virtio device over the server at `socketPath`: the back-end
/// attaches first (peer 0, the back-end protocol) and runs on its own loop thread.
public final class VirtioPair: @unchecked Sendable {
    public let backEnd: VirtioEndpoint
    public let backend: VirtioBackend
    public let runner: BackendRunner
    public let frontEnd: VirtioEndpoint
    public let frontend: VirtioFrontend

    public init(socketPath: String, profile: String, device: any VirtioDeviceImplementation) throws {
        let backEnd = try VirtioEndpoint.attach(socketPath: socketPath, profile: profile)
        self.backEnd = backEnd
        do {
            backend = try VirtioBackend(endpoint: backEnd, device: device)
            runner = try BackendRunner(backend: backend)
            runner.start()
            // VIRTIO-STATE-1: the back-end announces itself ready before the front-end exists.
            guard Monotonic.poll(timeout: 10, { backEnd.ownState == 1 }) else {
                runner.stop()
                throw CheckFailure(expected: "the back-end's State 1 (ready)", actual: "State \(backEnd.ownState)")
            }
            frontEnd = try VirtioEndpoint.attach(socketPath: socketPath, profile: profile)
        } catch {
            backEnd.close()
            throw error
        }
        frontend = try VirtioFrontend(endpoint: frontEnd)
    }

    public func close() {
        runner.stop()
        frontEnd.close()
        backEnd.close()
    }

    /// Both sides' findings, for failure messages.
    public var allFindings: [VirtioFinding] { backEnd.findings.all + frontEnd.findings.all }

    /// Waits until the back-end recorded a finding for `requirement`.
    public func expectBackEndFinding(_ requirement: String, timeout: Double = 10) throws {
        guard Monotonic.poll(timeout: timeout, { backEnd.findings.requirements.contains(requirement) }) else {
            throw CheckFailure(expected: "a back-end finding \(requirement)", actual: "findings \(allFindings)")
        }
    }

    public func expectNoFindings() throws {
        let all = allFindings
        guard all.isEmpty else { throw CheckFailure(expected: "no transport findings", actual: "\(all)") }
    }
}

private func expect(_ condition: Bool, _ expected: @autoclosure () -> String, _ actual: @autoclosure () -> String) throws {
    if !condition { throw CheckFailure(expected: expected(), actual: actual()) }
}

/// The scenarios of spec/virtio-ivshmem.md: each runs two emulated peers over the server at
/// `socketPath` (configured for the device: 2 peers, protocol C003h console or C002h block) and
/// throws a CheckFailure when the transport does not behave. The conformance suite
/// (fixtures/conformance-virtio) runs them as built-in checks; the Swift tests call them too.
public enum VirtioChecks {
    /// A pipe the console back-end writes to, and a reader that waits for `count` bytes.
    static func consoleBackEnd() throws -> (ConsoleBackEnd, read: FileDescriptor, write: FileDescriptor) {
        let (r, w) = try SpawnedProcess.makePipe()
        return (ConsoleBackEnd(output: w, columns: 132, rows: 43), r, w)
    }

    /// Runs `body` with a console pair whose back-end writes into a pipe.
    static func withConsole(_ socketPath: String, _ profile: String, _ body: (VirtioPair, ConsoleBackEnd) throws -> Void) throws {
        let (console, r, w) = try consoleBackEnd()
        defer { r.closeQuietly(); w.closeQuietly() }
        let pair = try VirtioPair(socketPath: socketPath, profile: profile, device: console)
        defer { pair.close() }
        try body(pair, console)
    }

    static func readExactly(_ fd: FileDescriptor, _ count: Int, timeout: Double = 10) throws -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        let deadline = Monotonic.now() + timeout
        while out.count < count {
            let left = deadline - Monotonic.now()
            guard left > 0, try fd.waitReadable(timeoutMilliseconds: Int32(left * 1000)) else { break }
            let n = try buffer.withUnsafeMutableBytes { try fd.read(into: $0) }
            if n <= 0 { break }
            out += buffer[0..<n]
        }
        return out
    }

    /// Console bytes both ways (VIRTIO-CON-1, VIRTIO-NOTIFY-1, VIRTIO-NOTIFY-3, VIRTIO-STATE-1, VIRTIO-STATE-2).
    public static func consoleRoundTrip(socketPath: String, profile: String) throws {
        let (console, pipeRead, pipeWrite) = try consoleBackEnd()
        defer { pipeRead.closeQuietly(); pipeWrite.closeQuietly() }
        let pair = try VirtioPair(socketPath: socketPath, profile: profile, device: console)
        defer { pair.close() }
        let driver = try ConsoleDriver(frontend: pair.frontend)
        try expect(pair.frontEnd.ownState == 1 && pair.backEnd.peerState == 1, "both States 1 after the probe", "front-end \(pair.frontEnd.ownState)")
        try expect(driver.columns == 132 && driver.rows == 43, "132x43 from the configuration", "\(driver.columns)x\(driver.rows)")
        let toBack = Array("front-end to back-end: \(String(repeating: "x", count: 3000))\n".utf8)
        try driver.write(toBack)
        let got = try readExactly(pipeRead, toBack.count)
        try expect(got == toBack, "\(toBack.count) bytes on the back-end's output", "\(got.count) bytes")
        let toFront = Array("back-end to front-end: hello\n".utf8)
        pair.runner.perform { b in console.feed(toFront, backend: b) }
        var received: [UInt8] = []
        while received.count < toFront.count { received += try driver.read() }
        try expect(received == toFront, String(decoding: toFront, as: UTF8.self), String(decoding: received, as: UTF8.self))
        try pair.expectNoFindings()
    }

    /// A pattern written through the front-end reads back and is in the file (VIRTIO-BLK-1,
    /// VIRTIO-BLK-2); a request beyond the capacity fails with IOERR and a finding.
    public static func blockRoundTrip(socketPath: String, profile: String) throws {
        let dir = try FileSystem.makeTemporaryDirectory(template: "/tmp/ivshmem2-virtio-blk.XXXXXX")
        defer { FileSystem.removeDirectoryTree(dir) }
        let imageSize = 1 << 20
        let image = try FileDescriptor.open(dir + "/disk.img", flags: O_RDWR | O_CREAT, mode: 0o600)
        defer { image.closeQuietly() }
        try image.truncate(to: imageSize)
        let pair = try VirtioPair(socketPath: socketPath, profile: profile, device: BlockBackEnd(image: image, imageBytes: UInt64(imageSize)))
        defer { pair.close() }
        let disk = try BlockDriver(frontend: pair.frontend)
        try expect(disk.capacitySectors == UInt64(imageSize / 512), "capacity \(imageSize / 512) sectors", "\(disk.capacitySectors)")
        for (sector, size) in [(UInt64(0), 4096), (8, 65536), (1000, 512), (UInt64(imageSize / 512 - 128), 65536)] {
            let pattern = (0..<size).map { UInt8(truncatingIfNeeded: $0 * 7 + Int(sector)) }
            try disk.write(sector: sector, bytes: pattern)
            let back = try disk.read(sector: sector, count: size)
            try expect(back == pattern, "sector \(sector): the \(size) bytes written", "different bytes")
            var inFile = [UInt8](repeating: 0, count: size)
            _ = try inFile.withUnsafeMutableBytes { try image.read(into: $0, at: sector * 512) }
            try expect(inFile == pattern, "sector \(sector): the pattern in the image file", "different bytes")
        }
        try disk.flush()
        let status = try disk.rawStatus(type: VirtioBlock.typeIn, sector: disk.capacitySectors - 1, count: 4096)
        try expect(status == VirtioBlock.statusIOError, "IOERR for a read past the end", "status \(status)")
        try pair.expectBackEndFinding("VIRTIO-BLK-2")
        let unsupported = try disk.rawStatus(type: 99, sector: 0, count: 0)
        try expect(unsupported == VirtioBlock.statusUnsupported, "UNSUPP for request type 99", "status \(unsupported)")
    }

    /// The offer, the driver's choice, refusal of features not offered (VIRTIO-FEAT-1…4).
    public static func featureNegotiation(socketPath: String, profile: String) throws {
        try withConsole(socketPath, profile) { pair, console in
            let f = pair.frontend
            try f.probe()
            try f.reset()
            try f.setStatus([.acknowledge, .driver])
            let offered = try f.deviceFeatures()
            let transport = VirtioFeature.version1 | VirtioFeature.accessPlatform | VirtioFeature.orderPlatform
            try expect(offered == transport | VirtioConsole.featureSize, "offer 0x\(String(transport | 1, radix: 16))", "0x\(String(offered, radix: 16))")
            // Not offered: bit 40. The device refuses FEATURES_OK.
            try f.writeDriverFeatures(VirtioFeature.version1 | 1 << 40)
            try f.setStatus([.acknowledge, .driver, .featuresOK])
            try f.synchronize()
            try expect(!f.status.contains(.featuresOK), "FEATURES_OK refused", "status \(f.status)")
            try pair.expectBackEndFinding("VIRTIO-FEAT-4")
            // Without VERSION_1.
            try f.reset()
            try f.setStatus([.acknowledge, .driver])
            try f.writeDriverFeatures(VirtioConsole.featureSize)
            try f.setStatus([.acknowledge, .driver, .featuresOK])
            try f.synchronize()
            try expect(!f.status.contains(.featuresOK), "FEATURES_OK refused without VERSION_1", "status \(f.status)")
            try pair.expectBackEndFinding("VIRTIO-FEAT-3")
            // A proper negotiation: what both sides end up with.
            pair.backEnd.findings.clear()
            let negotiated = try f.negotiate(wanted: VirtioConsole.featureSize | 1 << 40)
            try expect(negotiated == VirtioFeature.version1 | VirtioConsole.featureSize, "VERSION_1|SIZE", "0x\(String(negotiated, radix: 16))")
            let backSide = pair.runner.inspect { $0.driverFeatures }
            try expect(backSide == negotiated, "the back-end's driver features equal", "\(String(describing: backSide))")
            try pair.expectNoFindings()
        }
    }

    /// The header's fields at their offsets, the config after them, queue_sel (VIRTIO-HDR-1,
    /// VIRTIO-HDR-2, VIRTIO-Q-1), and write transactions applied once each (VIRTIO-WT-1, VIRTIO-WT-2).
    public static func headerAndTransactions(socketPath: String, profile: String) throws {
        try withConsole(socketPath, profile) { pair, console in
            let f = pair.frontend
            try f.probe()
            let rw = pair.frontEnd.rw
            let revision: UInt32 = rw.load(0), size: UInt32 = rw.load(4)
            try expect(revision == 1 && size == 76 + 12, "revision 1, size 88", "revision \(revision), size \(size)")
            try expect(rw.load(76) as UInt16 == 132 && rw.load(78) as UInt16 == 43, "cols 132 rows 43 at config (76)", "\(rw.load(76) as UInt16)x\(rw.load(78) as UInt16)")
            try f.writeRegister(VirtioHeader.queueSel, size: 4, value: 1)
            try f.synchronize()
            let qsize: UInt16 = rw.load(32), vector: UInt16 = rw.load(34)
            try expect(qsize == VirtioConsole.queueSize, "queue 1 size \(VirtioConsole.queueSize) at 32", "\(qsize)")
            try expect(Int(vector) < pair.backEnd.vectors, "a device vector the back-end has", "\(vector)")
            try f.writeRegister(VirtioHeader.queueSel, size: 4, value: 7)
            try f.synchronize()
            try expect(rw.load(32) as UInt16 == 0, "size 0 for a queue that does not exist", "\(rw.load(32) as UInt16)")
            try expect(rw.loadAcquire32(VirtioHeader.writeTransaction) == 0, "write_transaction 0 when idle", "\(rw.loadAcquire32(8))")
            let done = pair.runner.inspect { $0.transactions } ?? []
            try expect(done == [VirtioHeader.queueSel, VirtioHeader.queueSel], "two queue_sel transactions, once each", "\(done)")
            // A field the driver may not write (VIRTIO-WT-4).
            try f.writeRegister(VirtioHeader.deviceFeatures, size: 4, value: 0xFFFF)
            try pair.expectBackEndFinding("VIRTIO-WT-4")
        }
    }

    /// A write transaction the back-end never clears (VIRTIO-WT-3).
    public static func transactionNeverCleared(socketPath: String, profile: String) throws {
        try withConsole(socketPath, profile) { pair, console in
            let f = pair.frontend
            try f.probe()
            _ = pair.runner.inspect { _ in true }
            pair.runner.setPaused(true)
            f.transactionTimeout = 0.3
            try f.writeRegister(VirtioHeader.queueSel, size: 4, value: 0)
            do {
                try f.synchronize()
                throw CheckFailure(expected: "VIRTIO-WT-3 from synchronize", actual: "the transaction completed")
            } catch let e as VirtioError {
                try expect(e.requirement == "VIRTIO-WT-3", "VIRTIO-WT-3", "\(e)")
            }
            try expect(pair.frontEnd.findings.requirements == ["VIRTIO-WT-3"], "one front-end finding VIRTIO-WT-3", "\(pair.frontEnd.findings.all)")
            pair.runner.setPaused(false)
        }
    }

    /// Status: 0 resets, DRIVER_OK needs FEATURES_OK (VIRTIO-STATUS-1, VIRTIO-STATUS-2).
    public static func statusRules(socketPath: String, profile: String) throws {
        try withConsole(socketPath, profile) { pair, console in
            let f = pair.frontend
            try f.probe()
            try f.negotiate(wanted: 0)
            _ = try f.setUpQueue(0, of: 2)
            try f.driverOK()
            let running = pair.runner.inspect { ($0.status.contains(.driverOK), $0.queue(0) != nil) }
            try expect(running?.0 == true && running?.1 == true, "DRIVER_OK and queue 0 active", "\(String(describing: running))")
            try f.reset()
            let after = pair.runner.inspect { ($0.status.rawValue, $0.queue(0) == nil, $0.driverFeatures) }
            try expect(after?.0 == 0 && after?.1 == true && after?.2 == 0, "status 0, no queue, no features after reset", "\(String(describing: after))")
            try expect(f.status.rawValue == 0, "device_status reads 0", "\(f.status)")
            try pair.expectNoFindings()
            try f.setStatus([.acknowledge, .driver, .driverOK])
            try pair.expectBackEndFinding("VIRTIO-STATUS-2")
        }
    }

    /// Bad queues: size beyond the maximum, rings outside the R/W section, a buffer outside it,
    /// a kick before DRIVER_OK (VIRTIO-Q-2, VIRTIO-Q-3, VIRTIO-Q-4, VIRTIO-NOTIFY-2).
    public static func queueViolations(socketPath: String, profile: String) throws {
        try withConsole(socketPath, profile) { pair, console in
            let f = pair.frontend
            let rw = pair.frontEnd.rw
            try f.probe()
            try f.negotiate(wanted: 0)
            try f.writeRegister(VirtioHeader.queueSel, size: 4, value: 0)
            _ = try f.enableQueue(0, layout: SplitRingLayout(size: 128, desc: 4096, avail: 8192, used: 12288), deviceVector: 0, driverVector: 0)
            try pair.expectBackEndFinding("VIRTIO-Q-2")
            try expect(rw.load(VirtioHeader.queueEnable) as UInt16 == 0, "queue_enable back to 0", "\(rw.load(VirtioHeader.queueEnable) as UInt16)")
            let outside = UInt64(rw.size) + 4096
            _ = try f.enableQueue(0, layout: SplitRingLayout(size: 8, desc: outside, avail: 8192, used: 12288), deviceVector: 0, driverVector: 0)
            try pair.expectBackEndFinding("VIRTIO-Q-3")
            try expect(rw.load(VirtioHeader.queueEnable) as UInt16 == 0, "queue_enable back to 0", "\(rw.load(VirtioHeader.queueEnable) as UInt16)")
            // A proper transmit queue, used before DRIVER_OK.
            let tx = try f.setUpQueue(VirtioConsole.transmitQueue, of: 2)
            let buffer = try f.allocate(64)
            tx.add([VirtioBuffer(offset: buffer, length: 64, writable: false)])
            f.kick(tx)
            try pair.expectBackEndFinding("VIRTIO-NOTIFY-2")
            try f.driverOK()
            _ = try f.waitForUsed(tx)
            // A buffer outside the R/W section: returned unused, with a finding.
            tx.add([VirtioBuffer(offset: rw.size - 16, length: 64, writable: false)])
            f.kick(tx)
            let used = try f.waitForUsed(tx)
            try expect(used.written == 0, "the bad chain returned with length 0", "\(used.written)")
            try pair.expectBackEndFinding("VIRTIO-Q-4")
        }
    }

    /// Configuration changes: generation odd while updating, config_event and vector 0; driver
    /// config writes as transactions (VIRTIO-CFG-1, VIRTIO-CFG-2, VIRTIO-NOTIFY-3).
    public static func configChanges(socketPath: String, profile: String) throws {
        try withConsole(socketPath, profile) { pair, console in
            let driver = try ConsoleDriver(frontend: pair.frontend)
            let f = pair.frontend
            let before = pair.frontEnd.rw.loadAcquire32(VirtioHeader.configGeneration)
            pair.runner.perform { b in b.updateConfig(offset: 0, bytes: [200, 0, 60, 0]) }
            let deadline = Monotonic.now() + 10
            var event = false
            while !event && Monotonic.now() < deadline {
                pair.frontEnd.waitForInterrupt(timeout: 0.1)
                let vectors = pair.frontEnd.takeInterrupts()
                event = f.takeConfigEvent()
                if event { try expect(vectors.contains(0) || vectors.isEmpty, "the config change on vector 0", "\(vectors)") }
            }
            try expect(event, "config_event after the change", "none")
            let after = pair.frontEnd.rw.loadAcquire32(VirtioHeader.configGeneration)
            try expect(after == before &+ 2 && after & 1 == 0, "generation \(before) + 2", "\(after)")
            let c = try f.readConfig(offset: 0, count: 4)
            try expect(c == [200, 0, 60, 0], "cols 200 rows 60", "\(c)")
            try f.writeConfig(offset: 8, size: 4, value: 1)
            try f.synchronize()
            let done = pair.runner.inspect { $0.transactions.last } ?? nil
            try expect(done == VirtioHeader.config + 8, "a transaction for config+8", "\(String(describing: done))")
            _ = driver
            try pair.expectNoFindings()
        }
    }

    /// Either side leaving the ready state (VIRTIO-STATE-3): the back-end starts over and is
    /// ready again; the front-end sees the back-end fail.
    public static func peerLeaves(socketPath: String, profile: String) throws {
        try withConsole(socketPath, profile) { pair, console in
            _ = try ConsoleDriver(frontend: pair.frontend)
            pair.frontend.remove()
            guard Monotonic.poll(timeout: 10, { pair.runner.inspect(timeout: 1, { $0.phase }) == .waitingForFrontEnd }) else {
                throw CheckFailure(expected: "the back-end waiting for the front-end again", actual: "\(String(describing: pair.runner.inspect { $0.phase }))")
            }
            try expect(pair.backEnd.ownState == 1, "the back-end ready again (State 1)", "State \(pair.backEnd.ownState)")
            // The front-end probes again and works.
            let driver = try ConsoleDriver(frontend: pair.frontend)
            try driver.write(Array("again\n".utf8))
            // Now the back-end goes away.
            pair.runner.stop()
            pair.backEnd.setState(0)
            do {
                try driver.write(Array("lost\n".utf8), timeout: 2)
                throw CheckFailure(expected: "VIRTIO-STATE-3 from the write", actual: "it completed")
            } catch let e as VirtioError {
                try expect(e.requirement == "VIRTIO-STATE-3", "VIRTIO-STATE-3", "\(e)")
            }
            try expect(pair.frontEnd.findings.requirements.contains("VIRTIO-STATE-3"), "a front-end finding VIRTIO-STATE-3", "\(pair.frontEnd.findings.all)")
        }
    }

    /// Links that are not virtio links (VIRTIO-LINK-1, VIRTIO-LINK-2, VIRTIO-LINK-3): each on a
    /// server of its own.
    public static func linkRequirements(profile: String) throws {
        func attempt(maxPeers: UInt64, protocolValue: UInt64, size: UInt64, _ expected: String, device: (any VirtioDeviceImplementation)? = nil) throws {
            let dir = try FileSystem.makeTemporaryDirectory(template: "/tmp/ivshmem2-virtio-link.XXXXXX")
            defer { FileSystem.removeDirectoryTree(dir) }
            var c = ServerConfiguration()
            c.socketPath = dir + "/sock"
            c.maxPeers = maxPeers
            c.vectors = 2
            c.size = size
            c.outputSectionSize = 0
            c.protocolValue = protocolValue
            var logger = Logger(label: "virtio-link-check")
            logger.logLevel = .critical
            let server = try ServerThread.start(configuration: c, logger: logger)
            defer { server.stop() }
            do {
                let e = try VirtioEndpoint.attach(socketPath: c.socketPath, profile: profile)
                defer { e.close() }
                if let device { _ = try VirtioBackend(endpoint: e, device: device) }
                throw CheckFailure(expected: "\(expected) refusing the link", actual: "accepted")
            } catch let e as VirtioError {
                try expect(e.requirement == expected, expected, "\(e)")
            }
        }
        // Our server refuses a virtio protocol with more than 2 peers (SRV-VIRTIO-2); another
        // server may not, so the endpoint checks Maximum Peers first, whatever the protocol.
        try attempt(maxPeers: 3, protocolValue: 0, size: 1 << 20, "VIRTIO-LINK-1")
        try attempt(maxPeers: 2, protocolValue: 0x4003, size: 1 << 20, "VIRTIO-LINK-2")
        try attempt(maxPeers: 2, protocolValue: 0xC003, size: 8192, "VIRTIO-LINK-3")
        let (r, w) = try SpawnedProcess.makePipe()
        defer { r.closeQuietly(); w.closeQuietly() }
        try attempt(maxPeers: 2, protocolValue: 0xC003, size: 1 << 20, "VIRTIO-LINK-2", device: BlockBackEnd(image: w, imageBytes: 0))
    }
}
