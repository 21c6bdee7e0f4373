import IvshmemWire
import Testing

/// The message codec: layouts (WIRE-GEN-*, WIRE-INIT-*, WIRE-EVT-1, WIRE-GONE-1) and every
/// device-side check the decoder makes (WIRE-CLI-1 … -6, -15, -16).
extension IvshmemServerTestSuite {
@Suite("Wire codec")
struct WireCodecTests {
    static let sampleInfo = InitialInfo(id: 1, maxPeers: 4, vectors: 2, protocol: 0x4001, outputSectionSize: 0x10000)

    func header(_ type: UInt32, _ length: UInt32) -> [UInt8] {
        var b: [UInt8] = []
        for v in [type, length] { for s in 0..<4 { b.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(s)))) } }
        return b
    }

    func u32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * UInt32($0))) } }

    func initBytes(version: UInt32 = 2, compatible: UInt32 = 2, id: UInt32 = 1, maxPeers: UInt32 = 4, vectors: UInt32 = 2,
                   protocol p: UInt32 = 0x4001, out: UInt64 = 0x10000, length: UInt32 = 40, extra: Int = 0) -> [UInt8] {
        var b = header(0, length) + u32(version) + u32(compatible) + u32(id) + u32(maxPeers) + u32(vectors) + u32(p)
        b += u32(UInt32(truncatingIfNeeded: out)) + u32(UInt32(truncatingIfNeeded: out >> 32))
        b += [UInt8](repeating: 0xEE, count: extra)
        return b
    }

    @Test("WIRE-INIT-1, WIRE-INIT-2, WIRE-GEN-1, WIRE-GEN-2: INIT is 40 little-endian bytes with version 2 and compatible_version 2")
    func initLayout() throws {
        let bytes = WireMessage.initial(Self.sampleInfo).encode()
        #expect(bytes.count == 40)
        #expect(bytes == initBytes())
        // The capture's B INIT body, byte for byte.
        let hex = bytes[8...].map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        #expect(hex == "0200000002000000010000000400000002000000014000000000010000000000")
        #expect(try WireMessage.decode(bytes, initial: true) == .initial(Self.sampleInfo))
    }

    @Test("WIRE-EVT-1: EVENT_FD is type 1, len 16, id and vector")
    func eventFDLayout() throws {
        let bytes = WireMessage.eventFD(id: 0x0102, vector: 7).encode()
        #expect(bytes == header(1, 16) + u32(0x0102) + u32(7))
        #expect(try WireMessage.decode(bytes, initial: false) == .eventFD(id: 0x0102, vector: 7))
        #expect(WireMessage.eventFD(id: 0, vector: 0).carriesFileDescriptor)
    }

    @Test("WIRE-GONE-1: PEER_GONE is type 2, len 12, carries no fd")
    func peerGoneLayout() throws {
        let bytes = WireMessage.peerGone(id: 65535).encode()
        #expect(bytes == header(2, 12) + u32(65535))
        #expect(try WireMessage.decode(bytes, initial: false) == .peerGone(id: 65535))
        #expect(!WireMessage.peerGone(id: 1).carriesFileDescriptor)
    }

    @Test("WIRE-CLI-1: the first message must be type 0 with len ≥ 40")
    func initTypeAndLength() {
        var wrongType = initBytes()
        wrongType[0] = 1
        #expect(throws: WireError.notInitial(type: 1)) { try WireMessage.decode(wrongType, initial: true) }
        let short = Array(initBytes(length: 39).prefix(39))
        #expect(throws: WireError.messageTooShort(type: .initial, length: 39, minimum: 40)) { try WireMessage.decode(short, initial: true) }
    }

    @Test("WIRE-CLI-2: bytes beyond a message's fixed size are skipped")
    func extraBytesSkipped() throws {
        let long = initBytes(length: 48, extra: 8)
        #expect(try WireMessage.decode(long, initial: true) == .initial(Self.sampleInfo))
        let event = header(1, 20) + u32(3) + u32(1) + [9, 9, 9, 9]
        #expect(try WireMessage.decode(event, initial: false) == .eventFD(id: 3, vector: 1))
        let gone = header(2, 16) + u32(3) + [1, 2, 3, 4]
        #expect(try WireMessage.decode(gone, initial: false) == .peerGone(id: 3))
    }

    @Test("WIRE-CLI-3: compatible_version must be 2; version is not checked")
    func compatibleVersion() throws {
        #expect(throws: WireError.incompatibleVersion(compatibleVersion: 3, expected: 2)) {
            try WireMessage.decode(initBytes(compatible: 3), initial: true)
        }
        #expect(throws: WireError.incompatibleVersion(compatibleVersion: 1, expected: 2)) {
            try WireMessage.decode(initBytes(compatible: 1), initial: true)
        }
        _ = try WireMessage.decode(initBytes(version: 7), initial: true)
    }

    @Test("WIRE-CLI-4: the INIT id must be ≤ 65535 and < max_peers")
    func initID() throws {
        #expect(throws: WireError.peerIDAboveLimit(id: 65536, limit: 65535)) {
            try WireMessage.decode(initBytes(id: 65536, maxPeers: 65536), initial: true)
        }
        #expect(throws: WireError.peerIDNotBelowMaxPeers(id: 4, maxPeers: 4)) {
            try WireMessage.decode(initBytes(id: 4, maxPeers: 4), initial: true)
        }
        _ = try WireMessage.decode(initBytes(id: 65535, maxPeers: 65536), initial: true)
    }

    @Test("WIRE-CLI-5: max_peers must be in 2…65536")
    func maxPeers() {
        #expect(throws: WireError.maxPeersOutOfRange(maxPeers: 1, allowed: 2...65536)) {
            try WireMessage.decode(initBytes(id: 0, maxPeers: 1), initial: true)
        }
        #expect(throws: WireError.maxPeersOutOfRange(maxPeers: 65537, allowed: 2...65536)) {
            try WireMessage.decode(initBytes(id: 0, maxPeers: 65537), initial: true)
        }
    }

    @Test("WIRE-CLI-6: vectors must be in 1…1024")
    func vectors() throws {
        #expect(throws: WireError.vectorsOutOfRange(vectors: 0, allowed: 1...1024)) { try WireMessage.decode(initBytes(vectors: 0), initial: true) }
        #expect(throws: WireError.vectorsOutOfRange(vectors: 1025, allowed: 1...1024)) { try WireMessage.decode(initBytes(vectors: 1025), initial: true) }
        _ = try WireMessage.decode(initBytes(vectors: 1024), initial: true)
        _ = try WireMessage.decode(initBytes(vectors: 1), initial: true)
    }

    @Test("WIRE-CLI-15: a message shorter than its type's fixed size is an error")
    func shortMessages() {
        #expect(throws: WireError.messageTooShort(type: .eventFD, length: 15, minimum: 16)) {
            try WireMessage.decode(header(1, 15) + [0, 0, 0, 0, 0, 0, 0], initial: false)
        }
        #expect(throws: WireError.messageTooShort(type: .peerGone, length: 8, minimum: 12)) {
            try WireMessage.decode(header(2, 8), initial: false)
        }
    }

    @Test("WIRE-CLI-16: unknown types and a late INIT are errors; len < 8 cannot be framed")
    func unknownAndLateInit() {
        #expect(throws: WireError.unknownType(9)) { try WireMessage.decode(header(9, 12) + u32(0), initial: false) }
        #expect(throws: WireError.unexpectedType(.initial)) { try WireMessage.decode(initBytes(), initial: false) }
        #expect(throws: WireError.lengthBelowHeader(type: 1, length: 4)) { try MessageHeader(parsing: header(1, 4)) }
        #expect(throws: WireError.lengthTooLarge(type: 1, length: 0xFFFF_FFFF, limit: WireConstants.maxMessageLength)) {
            try MessageHeader(parsing: header(1, 0xFFFF_FFFF))
        }
        #expect(throws: WireError.truncatedHeader(received: 5)) { try MessageHeader(parsing: [1, 2, 3, 4, 5]) }
        // Every error names what is wrong with the values.
        #expect(WireError.unknownType(9).description.contains("9"))
        #expect(WireError.vectorsOutOfRange(vectors: 0, allowed: 1...1024).description.contains("0 vectors"))
    }

    @Test("WIRE-GEN-2, WIRE-GEN-3: the reader asks for exactly one header, then exactly its body")
    func framing() throws {
        var reader = MessageReader()
        #expect(reader.bytesWanted == 8)
        let stream = WireMessage.initial(Self.sampleInfo).encode() + WireMessage.eventFD(id: 0, vector: 1).encode() + header(7, 10) + [1, 2]
        var offset = 0
        var frames: [MessageReader.Frame] = []
        while offset < stream.count {
            // Feed in awkward pieces, never more than wanted.
            let n = min(reader.bytesWanted, 3, stream.count - offset)
            if let frame = try reader.consume(stream[offset..<(offset + n)]) { frames.append(frame) }
            offset += n
        }
        #expect(frames.count == 3)
        #expect(try frames[0].decode(initial: true) == .initial(Self.sampleInfo))
        #expect(try frames[1].decode(initial: false) == .eventFD(id: 0, vector: 1))
        #expect(throws: WireError.unknownType(7)) { try frames[2].decode(initial: false) }
        #expect(!reader.isInsideMessage)
        // More bytes than wanted are refused rather than silently merged into the next message.
        var strict = MessageReader()
        #expect(throws: WireError.readTooLong(wanted: 8, received: 13)) { try strict.consume(WireMessage.peerGone(id: 1).encode() + [0]) }
        // So is a header with part of its body: the body's descriptor must arrive with the body.
        var split = MessageReader()
        #expect(throws: WireError.readTooLong(wanted: 8, received: 11)) { try split.consume(WireMessage.peerGone(id: 1).encode().prefix(11)) }
        #expect(try split.consume(WireMessage.peerGone(id: 1).encode().prefix(8)) == nil && split.bytesWanted == 4)
    }

    @Test("WIRE-CLI-16: malformed input never crashes the decoder (random bytes)")
    func fuzzNoCrash() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let count = Int.random(in: 0...64, using: &generator)
            var bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            if count >= 8 && Bool.random(using: &generator) {
                bytes[0] = UInt8.random(in: 0...3, using: &generator); bytes[1...3] = [0, 0, 0]
                bytes[4] = UInt8(count); bytes[5...7] = [0, 0, 0]
            }
            _ = try? WireMessage.decode(bytes, initial: Bool.random(using: &generator))
            var reader = MessageReader()
            var i = 0
            while i < bytes.count {
                let n = min(max(reader.bytesWanted, 1), bytes.count - i)
                guard (try? reader.consume(bytes[i..<(i + n)])) != nil else { break }
                i += n
            }
        }
    }
}
}
