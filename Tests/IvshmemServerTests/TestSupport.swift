import IvshmemPosix
import IvshmemWire
import Testing

/// Every suite of this target, run one test at a time: they spawn servers, connect hundreds
/// of sockets and count this process's descriptors, which parallel tests would disturb.
@Suite(.serialized)
enum IvshmemServerTestSuite {}

/// A unique name for a POSIX shared-memory object used by one test.
func uniqueShmName(_ tag: String) -> String {
    "ivs2-test-\(SpawnedProcess.currentProcessID)-\(tag)-\(UInt32.random(in: 0...UInt32.max))"
}

/// The messages a newcomer with `id` expects (WIRE-SEQ-1, -3, -4): INIT, then the existing
/// peers' eventfds in connection order, then its own.
func expectedSetup(id: UInt32, existing: [UInt32], vectors: UInt32, info: InitialInfo) -> [WireMessage?] {
    var result: [WireMessage?] = [.initial(info)]
    for other in existing { for v in 0..<vectors { result.append(.eventFD(id: other, vector: v)) } }
    for v in 0..<vectors { result.append(.eventFD(id: id, vector: v)) }
    return result
}

extension ReceivedWireMessage {
    /// Decoded, for comparisons that read better as messages than as bytes.
    func decoded(initial: Bool) -> WireMessage? {
        let header = MessageHeader(type: type, length: length)
        if initial { return (try? WireMessage.decodeInitial(header: header, body: body)).map(WireMessage.initial) }
        return try? WireMessage.decodeFollowing(header: header, body: body)
    }
}

extension Array where Element == ReceivedWireMessage {
    /// Decodes a client's messages; the first one of a connection is INIT.
    func decoded(firstIsInitial: Bool = true) -> [WireMessage?] {
        enumerated().map { $0.element.decoded(initial: firstIsInitial && $0.offset == 0) }
    }
}

/// EVENT_FD(id, 0) … EVENT_FD(id, vectors − 1).
func eventFDs(of id: UInt32, vectors: UInt32) -> [WireMessage?] {
    (0..<vectors).map { WireMessage.eventFD(id: id, vector: $0) }
}
