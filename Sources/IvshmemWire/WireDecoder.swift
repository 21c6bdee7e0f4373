/// Decoding with the message-level checks a device makes (WIRE-CLI-1 … -6, -15, -16), so that
/// a device model (or a test client) rejects what a real device would, with an error naming
/// the values. Checks that need a device's state (WIRE-CLI-7 … -14) are the device's.
extension WireMessage {
    /// Decodes the first message of a connection, which must be INIT: type 0 and len ≥ 40
    /// (WIRE-CLI-1), extra bytes ignored (WIRE-CLI-2), compatible_version 2 (WIRE-CLI-3),
    /// id ≤ 65535 and id < max_peers (WIRE-CLI-4), max_peers 2…65536 (WIRE-CLI-5),
    /// vectors 1…1024 (WIRE-CLI-6).
    public static func decodeInitial(header: MessageHeader, body: some Collection<UInt8>) throws(WireError) -> InitialInfo {
        guard header.type == MessageType.initial.rawValue else { throw .notInitial(type: header.type) }
        let body = try checkedBody(header: header, body: body, type: .initial)
        let info = InitialInfo(
            version: body.littleEndianUInt32(at: 0),
            compatibleVersion: body.littleEndianUInt32(at: 4),
            id: body.littleEndianUInt32(at: 8),
            maxPeers: body.littleEndianUInt32(at: 12),
            vectors: body.littleEndianUInt32(at: 16),
            protocol: body.littleEndianUInt32(at: 20),
            outputSectionSize: body.littleEndianUInt64(at: 24))
        try validate(info)
        return info
    }

    /// The INIT checks on decoded fields (also for a caller that builds `InitialInfo` itself).
    public static func validate(_ info: InitialInfo) throws(WireError) {
        guard info.compatibleVersion == WireConstants.protocolVersion else {
            throw .incompatibleVersion(compatibleVersion: info.compatibleVersion, expected: WireConstants.protocolVersion)
        }
        guard info.id <= WireConstants.maxPeerID else {
            throw .peerIDAboveLimit(id: info.id, limit: WireConstants.maxPeerID)
        }
        guard info.id < info.maxPeers else {
            throw .peerIDNotBelowMaxPeers(id: info.id, maxPeers: info.maxPeers)
        }
        guard WireConstants.maxPeersRange.contains(info.maxPeers) else {
            throw .maxPeersOutOfRange(maxPeers: info.maxPeers, allowed: WireConstants.maxPeersRange)
        }
        guard WireConstants.vectorRange.contains(info.vectors) else {
            throw .vectorsOutOfRange(vectors: info.vectors, allowed: WireConstants.vectorRange)
        }
    }

    /// Decodes a message after INIT: EVENT_FD (len ≥ 16) or PEER_GONE (len ≥ 12), shorter is an
    /// error (WIRE-CLI-15); extra bytes are ignored (WIRE-CLI-2). INIT here and unknown types
    /// are errors (WIRE-CLI-16); the framing has already consumed their bodies, so a device
    /// goes on with the next message (WIRE-CLI-17).
    /// Checks that need the device's state (vector order, known peer ids) are the device's.
    public static func decodeFollowing(header: MessageHeader, body: some Collection<UInt8>) throws(WireError) -> WireMessage {
        guard let type = header.messageType else {
            let array = Array(body)
            guard array.count == header.bodyLength else {
                throw .bodyLengthMismatch(expected: header.bodyLength, received: array.count)
            }
            throw .unknownType(header.type)
        }
        switch type {
        case .initial:
            throw .unexpectedType(.initial)
        case .eventFD:
            let body = try checkedBody(header: header, body: body, type: .eventFD)
            return .eventFD(id: body.littleEndianUInt32(at: 0), vector: body.littleEndianUInt32(at: 4))
        case .peerGone:
            let body = try checkedBody(header: header, body: body, type: .peerGone)
            return .peerGone(id: body.littleEndianUInt32(at: 0))
        }
    }

    /// Decodes a whole message (header and body in one buffer): INIT when `initial`,
    /// otherwise as ``decodeFollowing(header:body:)``.
    public static func decode(_ bytes: [UInt8], initial: Bool) throws(WireError) -> WireMessage {
        let header = try MessageHeader(parsing: bytes)
        let end = min(bytes.count, Int(header.length))
        let body = bytes[WireConstants.headerSize..<max(WireConstants.headerSize, end)]
        if initial { return .initial(try decodeInitial(header: header, body: body)) }
        return try decodeFollowing(header: header, body: body)
    }

    private static func checkedBody(header: MessageHeader, body: some Collection<UInt8>, type: MessageType) throws(WireError) -> [UInt8] {
        guard Int(header.length) >= type.minimumLength else {
            throw .messageTooShort(type: type, length: header.length, minimum: type.minimumLength)
        }
        let array = Array(body)
        guard array.count == header.bodyLength else {
            throw .bodyLengthMismatch(expected: header.bodyLength, received: array.count)
        }
        return array
    }
}
