import IvshmemWire
import Testing

/// The v1 message codec and a device's reading of the v1 stream (spec/ivshmem1.md §6).
extension IvshmemServerTestSuite {
@Suite("v1 wire protocol")
struct V1WireTests {
    @Test("V1-WIRE-GEN-1: a v1 message is one little-endian int64; -1 is eight FFh bytes")
    func codec() throws {
        #expect(V1Message.encode(0) == [0, 0, 0, 0, 0, 0, 0, 0])
        #expect(V1Message.encode(0x0102) == [2, 1, 0, 0, 0, 0, 0, 0])
        #expect(V1Message.encode(-1) == [UInt8](repeating: 0xFF, count: 8))
        for value: Int64 in [0, 1, 65535, -1, Int64.min, Int64.max] {
            #expect(try V1Message.decode(V1Message.encode(value)) == value)
        }
        #expect(throws: V1WireError.truncated(received: 7)) { try V1Message.decode([UInt8](repeating: 0, count: 7)) }
        #expect(V1ServerMessage.sharedMemory.value == -1 && V1ServerMessage.sharedMemory.carriesFileDescriptor)
        #expect(!V1ServerMessage.peerGone(id: 3).carriesFileDescriptor && V1ServerMessage.peerGone(id: 3).value == 3)
    }

    @Test("V1-WIRE-CLI-1, V1-WIRE-CLI-2: the first message must be version 0 and the second an ID 0…65535, both without a descriptor")
    func setUpChecks() throws {
        var a = V1Introduction(vectors: 1)
        #expect(throws: V1WireError.badVersion(value: 1, withDescriptor: false)) { try a.consume(1, withDescriptor: false) }
        #expect(throws: V1WireError.badVersion(value: 0, withDescriptor: true)) { try a.consume(0, withDescriptor: true) }
        #expect(try a.consume(0, withDescriptor: false) == .version)
        #expect(throws: V1WireError.badOwnID(value: 65536, withDescriptor: false)) { try a.consume(65536, withDescriptor: false) }
        #expect(throws: V1WireError.badOwnID(value: -1, withDescriptor: true)) { try a.consume(-1, withDescriptor: true) }
        #expect(throws: V1WireError.badOwnID(value: 4, withDescriptor: true)) { try a.consume(4, withDescriptor: true) }
        #expect(try a.consume(65535, withDescriptor: false) == .ownID(65535))
        #expect(a.ownID == 65535)
    }

    @Test("V1-WIRE-CLI-3, V1-WIRE-CLI-4, V1-WIRE-CLI-5, V1-WIRE-CLI-6, V1-WIRE-CLI-8: later messages: range, one shared memory, V eventfds per peer, departures of known peers only; complete with the own eventfds")
    func laterChecks() throws {
        var a = V1Introduction(vectors: 2)
        _ = try a.consume(0, withDescriptor: false)
        _ = try a.consume(1, withDescriptor: false)
        // QEMU takes eventfds before the shared memory too.
        #expect(try a.consume(0, withDescriptor: true) == .eventFD(id: 0, vector: 0))
        #expect(try a.consume(-1, withDescriptor: true) == .sharedMemory)
        #expect(throws: V1WireError.secondSharedMemory) { try a.consume(-1, withDescriptor: true) }
        #expect(throws: V1WireError.valueOutOfRange(-2)) { try a.consume(-2, withDescriptor: true) }
        #expect(throws: V1WireError.valueOutOfRange(65536)) { try a.consume(65536, withDescriptor: false) }
        #expect(try a.consume(0, withDescriptor: true) == .eventFD(id: 0, vector: 1))
        #expect(throws: V1WireError.tooManyEventFDs(id: 0, vectors: 2)) { try a.consume(0, withDescriptor: true) }
        #expect(!a.isComplete)
        #expect(try a.consume(1, withDescriptor: true) == .eventFD(id: 1, vector: 0))
        #expect(try a.consume(1, withDescriptor: true) == .eventFD(id: 1, vector: 1))
        #expect(a.isComplete)
        #expect(throws: V1WireError.departureOfSelf(id: 1)) { try a.consume(1, withDescriptor: false) }
        #expect(throws: V1WireError.departureOfUnknownPeer(id: 7)) { try a.consume(7, withDescriptor: false) }
        #expect(try a.consume(0, withDescriptor: false) == .peerGone(id: 0))
        #expect(a.eventFDCount(of: 0) == 0)
        // A new peer may later take the departed ID.
        #expect(try a.consume(0, withDescriptor: true) == .eventFD(id: 0, vector: 0))
        #expect(a.knownPeers == [0, 1])
    }
}
}
