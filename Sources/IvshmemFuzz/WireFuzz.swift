import IvshmemWire

/// Input: one control byte, then the bytes a server sends on a connection.
///
/// The control byte chooses how the stream is cut into reads: its low 6 bits seed the sizes of
/// the chunks (1…16 bytes, never more than `MessageReader.bytesWanted`, as a caller that reads
/// exactly what is wanted does); with bit 6 set the last read hands over everything left, so
/// a caller that reads too much is exercised too; with bit 7 set every read takes all it may.
/// Every frame is decoded as a device would (INIT first, then EVENT_FD / PEER_GONE / unknown),
/// and checked against a one-shot decode of the same bytes and against re-encoding.
enum WireFuzz {
    static func run(_ input: [UInt8]) -> FuzzTarget.Outcome {
        guard let control = input.first else { return .rejected }
        let stream = Array(input.dropFirst())
        var chunks = ChunkSizes(seed: control)
        var reader = MessageReader()
        var offset = 0
        var framesSeen = 0
        var frameStart = 0
        while offset < stream.count {
            if !reader.isInsideMessage { frameStart = offset }
            let wanted = reader.bytesWanted
            invariant(wanted > 0 && wanted <= Int(WireConstants.maxMessageLength), "bytesWanted \(wanted) between reads")
            var take = control & 0x80 != 0 ? wanted : min(wanted, chunks.next())
            if control & 0x40 != 0 && stream.count - offset <= 24 { take = stream.count - offset }
            take = min(take, stream.count - offset)
            let chunk = stream[offset..<(offset + take)]
            offset += take
            let frame: MessageReader.Frame?
            do { frame = try reader.consume(chunk) } catch {
                // The stream cannot be framed any further: a read longer than wanted, or a
                // header whose length cannot be framed. Nothing else may stop the reader.
                invariant(!error.description.isEmpty, "empty error text")
                switch error {
                case .readTooLong(wanted, take): break
                case .lengthBelowHeader, .lengthTooLarge: invariant(take <= wanted, "\(error) for a read of \(take) of \(wanted) bytes")
                default: invariant(false, "consume threw \(error) for \(take) bytes when \(wanted) were wanted")
                }
                return .accepted
            }
            invariant(take <= wanted, "consume took \(take) bytes when \(wanted) were wanted")
            guard let frame else { continue }
            check(frame, bytes: Array(stream[frameStart..<offset]), initial: framesSeen == 0)
            framesSeen += 1
        }
        invariant(reader.isInsideMessage == (reader.currentHeader != nil || reader.bytesWanted != WireConstants.headerSize),
                  "isInsideMessage disagrees with bytesWanted \(reader.bytesWanted)")
        // The whole stream as one buffer, as a test client's one-shot decode sees it.
        _ = try? WireMessage.decode(stream, initial: true)
        _ = try? WireMessage.decode(stream, initial: false)
        return .accepted
    }

    /// A frame (and the stream bytes it came from) decoded by the reader's path, by the one-shot path and, when valid, re-encoded.
    static func check(_ frame: MessageReader.Frame, bytes whole: [UInt8], initial: Bool) {
        invariant(frame.body.count == frame.header.bodyLength, "frame body \(frame.body.count) vs header \(frame.header.length)")
        invariant(whole.count == Int(frame.header.length) && Array(whole.dropFirst(WireConstants.headerSize)) == frame.body,
                  "a \(frame.header.length)-byte frame from \(whole.count) bytes of stream")
        let framed = Result { () throws(WireError) in try frame.decode(initial: initial) }
        let oneShot = Result { () throws(WireError) in try WireMessage.decode(whole, initial: initial) }
        invariant(framed == oneShot, "frame decodes to \(framed), the same bytes in one buffer to \(oneShot)")
        switch framed {
        case .success(let message):
            invariant(message.type == frame.header.messageType, "decoded \(message) from a type \(frame.header.type) header")
            invariant(frame.header.bodyLength + WireConstants.headerSize >= message.type.minimumLength, "short \(message) accepted")
            let again = Result { () throws(WireError) in try WireMessage.decode(message.encode(), initial: initial) }
            invariant(again == .success(message), "\(message) re-encoded decodes to \(again)")
            invariant(!message.description.isEmpty, "empty description")
        case .failure(let error):
            invariant(!error.description.isEmpty, "empty error text")
        }
    }

    /// Chunk sizes 1…16 from a xorshift generator seeded by the control byte.
    struct ChunkSizes {
        var state: UInt32
        init(seed: UInt8) { state = 0x9E37_79B9 ^ UInt32(seed & 0x3F) &* 0x0101_0101 }
        mutating func next() -> Int {
            state ^= state << 13
            state ^= state >> 17
            state ^= state << 5
            return Int(state % 16) + 1
        }
    }
}
