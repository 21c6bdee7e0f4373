import Foundation
import IvshmemHarness
import IvshmemModel
import IvshmemPlatform
import IvshmemPosix
import IvshmemTestSupport
import IvshmemTransport
import IvshmemWire
import Testing

/// Devices attached to the real server code over real sockets, eventfds and shared memory.
@Suite(.serialized) struct AttachedDeviceTests {
    @Test("WIRE-CLI-12, WIRE-CLI-13, REG-DB-3: a doorbell travels as an eventfd write and arrives as the target's MSI-X message")
    func doorbellAcrossServer() throws {
        try withTwoDrivenPeers { a, b in
            #expect(a.device.id == 0 && b.device.id == 1)
            a.ring(peer: 1, vector: 1)
            let r = try #require(b.waitForVector(1))
            #expect(r.kind == .msix(vector: 1, address: 0xFEE0_0000, data: 0x41))
            b.ring(peer: 0, vector: 0)
            #expect(a.waitForVector(0) != nil)
        }
    }

    @Test("WIRE-CLI-19, DEV-PEER-1: a device dropped without close() detaches: its thread ends, every descriptor is closed, the others see it leave")
    func forgottenCloseLeaksNothing() throws {
        let server = try TestServer()
        defer { server.stop() }
        let a = try AttachedDevice.attach(socketPath: server.path)
        defer { a.close() }
        let before = FileDescriptor.openCount()
        do {
            let b = try AttachedDevice.attach(socketPath: server.path)
            #expect(b.device.id == 1)
            #expect(a.waitForIntroductions(timeout: 10) { $0 == [0, 1] })
            _ = b  // the last reference goes away here, without close()
        }
        #expect(a.waitForPeers(timeout: 10) { $0 == [0] }, "the server saw the dropped device hang up")
        // The embedded server releases its copies of the departed peer's eventfds on its own
        // thread, possibly just after the PEER_GONE reached A.
        #expect(Monotonic.poll(timeout: 10) { FileDescriptor.openCount() == before }, "every descriptor of the dropped device closed: \(FileDescriptor.openCount() - before) more open")
    }

    @Test("WIRE-CLI-16, WIRE-CLI-17: a flood of bad messages from the server costs bounded memory; the link keeps working")
    func floodIsBounded() throws {
        let hostile = try HostileServer()
        defer { hostile.close() }
        let flood = 20_000
        hostile.serve { s, c in
            try s.send(c, WireMessage.initial(InitialInfo(id: 0, maxPeers: 4, vectors: 1, protocol: 0, outputSectionSize: 0x10000)).encode(),
                       fds: [try s.sharedMemory(size: 1 << 20)])
            try s.send(c, .eventFD(id: 0, vector: 0), fd: try s.eventFD().fd)
            let junk = MessageHeader.rawMessage(type: 7, length: 12, body: le32(0))  // an unknown type: an error, skipped
            var burst: [UInt8] = []
            for _ in 0..<1000 { burst += junk }
            for _ in 0..<(flood / 1000) { try s.send(c, burst) }
            try s.send(c, .eventFD(id: 1, vector: 0), fd: try s.eventFD().fd)
        }
        let d = try AttachedDevice.attach(socketPath: hostile.path)
        defer { d.close() }
        hostile.waitForScript()
        #expect(Monotonic.poll(timeout: 10) { d.isActive(1) }, "the good message after the flood used")
        let events = d.linkEvents
        #expect(events.count <= 4096, "link events kept: \(events.count)")
        #expect(d.droppedLinkEvents == flood + 2 - events.count, "every event counted: \(d.droppedLinkEvents) dropped, \(events.count) kept")
        #expect(events.last == .eventFD(peer: 1, vector: 0))
        #expect(d.isLinkUp)
    }

    @Test("DEV-PEER-5: a peer joining raises no event at the others")
    func joinRaisesNothing() throws {
        let server = try TestServer()
        defer { server.stop() }
        let a = try DrivenDevice(AttachedDevice.attach(socketPath: server.path))
        defer { a.link.close() }
        let b = try AttachedDevice.attach(socketPath: server.path)
        defer { b.close() }
        #expect(a.link.waitForPeers(timeout: 10) { $0 == [0, 1] })
        #expect(a.platform.interrupts.wait(timeout: 0.3) == nil)
        #expect(a.device.statistics.received == 0)
    }

    @Test("IRQ-STATE-1, REG-ST-5: a state write is in the table before the others' vector-0 interrupt")
    func stateChangeAcrossServer() throws {
        try withTwoDrivenPeers { a, b in
            let seen = Locked<UInt32?>(nil)
            b.platform.interrupts.addHandler { _ in seen.withLock { $0 = b.device.stateTableEntry(0) } }
            a.device.writeRegister(0x10, 0xA1)
            #expect(b.waitForVector(0) != nil)
            #expect(seen.withLock { $0 } == 0xA1)
        }
    }

    @Test("DEV-PEER-1, DEV-PEER-2, SHM-ST-5: a departure closes the peer's eventfds, zeroes its entry and rings our vector 0")
    func departure() throws {
        let server = try TestServer()
        defer { server.stop() }
        let a = try DrivenDevice(AttachedDevice.attach(socketPath: server.path))
        defer { a.link.close() }
        let c = try AttachedDevice.attach(socketPath: server.path)
        #expect(a.link.waitForPeers(timeout: 10) { $0 == [0, 1] } && c.waitForPeers(timeout: 10) { $0 == [0, 1] })
        c.device.writeRegister(0x10, 7)
        #expect(a.waitForVector(0) != nil)
        let mark = a.platform.interrupts.count
        let held = a.link.heldEventFDs(peer: 1)
        #expect(held.count == 2, "a holds c's eventfds for both vectors")
        c.close()
        #expect(Monotonic.poll(timeout: 10) { a.link.linkEvents.contains(.peerLeft(1)) })
        #expect(a.waitForVector(0, after: mark) != nil, "the RFC device rings its own vector 0 on PEER_GONE")
        #expect(a.device.stateTableEntry(1) == 0)
        #expect(!a.link.isActive(1))
        a.ring(peer: 1, vector: 0)
        #expect(a.device.findings.last?.requirement == "REG-DB-5")
        // a closed exactly the eventfds it held for c (DEV-PEER-1): their numbers are free now
        #expect(a.link.heldEventFDs(peer: 1).isEmpty)
        for fd in held { #expect(throws: (any Error).self) { try fd.isCloseOnExec() } }
    }

    @Test("DEV-PEER-3, SRV-ID-1: a reused ID is announced again from vector 0 and reachable")
    func idReuse() throws {
        let server = try TestServer()
        defer { server.stop() }
        let a = try DrivenDevice(AttachedDevice.attach(socketPath: server.path))
        defer { a.link.close() }
        let b1 = try AttachedDevice.attach(socketPath: server.path)
        #expect(b1.device.id == 1)
        #expect(a.link.waitForPeers(timeout: 10) { $0 == [0, 1] })
        b1.close()
        #expect(Monotonic.poll(timeout: 10) { a.link.linkEvents.contains(.peerLeft(1)) })
        let b2 = try DrivenDevice(AttachedDevice.attach(socketPath: server.path))
        defer { b2.link.close() }
        #expect(b2.device.id == 1)
        #expect(a.link.waitForPeers(timeout: 10) { $0 == [0, 1] })
        let announcements = a.link.linkEvents.filter { $0 == .eventFD(peer: 1, vector: 0) }
        #expect(announcements.count == 2)
        a.ring(peer: 1, vector: 1)
        #expect(b2.waitForVector(1) != nil)
    }

    @Test("DEV-PEER-4: a server hang-up is reported as link down and the model stays usable")
    func serverHangUp() throws {
        let server = try TestServer()
        let a = try DrivenDevice(AttachedDevice.attach(socketPath: server.path))
        defer { a.link.close() }
        #expect(a.link.waitForPeers(timeout: 10) { $0 == [0] })
        server.stop()
        #expect(Monotonic.poll(timeout: 10) { !a.link.isLinkUp })
        #expect(a.link.linkEvents.contains { if case .linkDown = $0 { return true }; return false })
        #expect(a.device.readRegister(0x00) == 0)
        a.device.writeRegister(0x10, 3)
        #expect(a.device.readRegister(0x10) == 3)
        #expect(a.device.stateTableEntry(0) == 3)
    }

    @Test("IRQ-COAL-2: events that pile up on one eventfd before the device services it give one delivery")
    func coalescing() throws {
        try withTwoDrivenPeers { a, b in try coalescing(a, b) }
    }

    private func coalescing(_ a: DrivenDevice, _ b: DrivenDevice) throws {
        // B's event loop is held inside its first interrupt handler while A rings five more times.
        let gate = DispatchSemaphore(value: 0)
        let entered = DispatchSemaphore(value: 0)
        let first = Locked(true)
        b.platform.interrupts.addHandler { _ in
            if first.withLock({ f in defer { f = false }; return f }) {
                entered.signal()
                gate.wait()
            }
        }
        a.ring(peer: 1, vector: 1)
        #expect(entered.wait(timeout: .now() + 10) == .success)
        for _ in 0..<5 { a.ring(peer: 1, vector: 1) }
        gate.signal()
        #expect(b.waitForVector(1, after: 1) != nil)
        #expect(b.platform.interrupts.wait(after: 2, timeout: 0.3) == nil, "the five signals must coalesce into one event")
        #expect(b.device.statistics.received == 2)
    }

    @Test("REG-DB-6: a doorbell to the own ID arrives at the writer over the server")
    func selfDoorbell() throws {
        let server = try TestServer()
        defer { server.stop() }
        let a = try DrivenDevice(AttachedDevice.attach(socketPath: server.path))
        defer { a.link.close() }
        #expect(a.link.waitForPeers(timeout: 10) { $0 == [0] })
        a.ring(peer: 0, vector: 1)
        #expect(a.waitForVector(1) != nil)
    }
}

import IvshmemSync
