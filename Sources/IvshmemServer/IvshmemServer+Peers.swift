#if canImport(Glibc)
import Glibc
#endif
import IvshmemPosix
import IvshmemWire
import Logging

/// Joining and leaving: the reference server's sequences, message for message.
extension IvshmemServer {
    /// Accepts every pending connection (a bounded number per wake-up, so that departures
    /// and sends are not starved).
    func acceptPending() {
        for _ in 0..<64 {
            let socket: FileDescriptor
            do {
                guard let accepted = try UnixSocket.accept(listener, nonBlocking: true) else { return }
                socket = accepted
            } catch let error as SystemCallError where error.errno == .tooManyOpenFiles || error.errno == .tooManyOpenFilesInSystem {
                refuseAtDescriptorLimit(error)
                return
            } catch {
                logger.error("accept failed", metadata: ["error": "\(error)"])
                return
            }
            admit(socket)
        }
    }

    /// At the descriptor limit a pending connection would keep the listener readable forever:
    /// free the spare descriptor, accept and close the connection, take the spare back. Linux
    /// reports EMFILE before it looks for a connection, so there may be none: then nobody is
    /// refused. Either way the peer holding the most queued descriptors goes (SRV-IO-4).
    private func refuseAtDescriptorLimit(_ error: SystemCallError) {
        dropHeaviestNonReader(because: "the server ran out of descriptors")
        spareDescriptor?.closeQuietly()
        spareDescriptor = nil
        if let socket = try? UnixSocket.accept(listener, nonBlocking: true) {
            logger.error("cannot accept a connection: out of file descriptors; refusing it", metadata: ["error": "\(error)"])
            socket.closeQuietly()
            count(refused: 1)
        } else {
            logger.error("out of file descriptors", metadata: ["error": "\(error)"])
        }
        spareDescriptor = try? FileDescriptor.open("/dev/null", flags: O_RDONLY)
    }

    /// The connect sequence (WIRE-SEQ-1 … WIRE-SEQ-5) for a newly accepted socket.
    private func admit(_ socket: FileDescriptor) {
        // SRV-SHM-6: the size INIT implies is the configured one, whatever a peer did to it.
        guard checkSharedMemorySize(before: "INIT") else {
            logger.error("refusing connection: the shared memory does not have its configured size")
            socket.closeQuietly()
            count(refused: 1)
            return
        }
        // SRV-ID-2: no free id: close without sending anything, keep serving the others.
        guard let id = allocateID() else {
            logger.warning("refusing connection: all peer ids are taken", metadata: ["maxPeers": "\(configuration.maxPeers)"])
            socket.closeQuietly()
            count(refused: 1)
            return
        }
        // One non-blocking eventfd per vector, as the reference creates them.
        var eventFDs: [OwnedDescriptor] = []
        do {
            for _ in 0..<configuration.vectors {
                eventFDs.append(OwnedDescriptor(try EventFD.create(nonBlocking: true).fd))
            }
        } catch {
            logger.error("refusing connection: cannot create eventfds", metadata: ["id": "\(id)", "error": "\(error)"])
            dropHeaviestNonReader(because: "the server could not create eventfds")
            eventFDs.removeAll()
            socket.closeQuietly()
            ids.release(id)
            count(refused: 1)
            return
        }
        let serial = nextSerial
        nextSerial += 1
        let newcomer = Peer(id: id, serial: serial, socket: socket, eventFDs: eventFDs, dialect: configuration.dialect)
        do {
            try epoll.add(socket, events: [.readable, .readHangUp], token: serial)
        } catch {
            logger.error("refusing connection: cannot watch its socket", metadata: ["id": "\(id)", "error": "\(error)"])
            socket.closeQuietly()
            ids.release(id)
            count(refused: 1)
            return
        }
        peersBySerial[serial] = newcomer
        count(accepted: 1)
        logger.debug("peer connected", metadata: ["id": "\(id)", "fd": "\(socket.rawValue)"])

        // 1. The greeting, with the shared memory: INIT (SRV-INIT-1, SRV-VIRTIO-1), or the
        //    version, the ID and −1 (V1-WIRE-SEQ-1, V1-WIRE-SEQ-2, V1-WIRE-SEQ-3).
        for message in greeting(forPeer: id) { enqueue(message, to: newcomer) }
        // 2. The newcomer's eventfds to every existing peer, in connection order (V1-WIRE-SEQ-4).
        for other in peers {
            for announcement in newcomer.announcements { enqueue(announcement, to: other) }
        }
        // 3. Every existing peer's eventfds to the newcomer (V1-WIRE-SEQ-5).
        for other in peers {
            for announcement in other.announcements { enqueue(announcement, to: newcomer) }
        }
        // 4. The newcomer's own eventfds (V1-WIRE-SEQ-6).
        for announcement in newcomer.announcements { enqueue(announcement, to: newcomer) }
        // 5. The newcomer joins the end of the connection order.
        peers.append(newcomer)
        publish()
        logger.info("peer joined", metadata: ["id": "\(id)", "peers": "\(peers.count)"])
    }

    /// What a newcomer is sent before any eventfd, in its server's protocol.
    private func greeting(forPeer id: UInt32) -> [OutgoingMessage] {
        switch configuration.dialect {
        case .v2:
            let info = InitialInfo(
                id: id,
                maxPeers: UInt32(configuration.maxPeers),
                vectors: UInt32(configuration.vectors),
                protocol: configuration.advertisedProtocol(forPeer: id),
                outputSectionSize: configuration.outputSectionSize)
            return [OutgoingMessage(.initial(info), attachment: sharedMemory.descriptor)]
        case .v1:
            return [
                OutgoingMessage(V1ServerMessage.version, attachment: nil),
                OutgoingMessage(V1ServerMessage.ownID(UInt16(id)), attachment: nil),
                OutgoingMessage(V1ServerMessage.sharedMemory, attachment: sharedMemory.descriptor),
            ]
        }
    }

    /// The free id the policy gives next: the lowest (SRV-ID-1) or the next in turn (V1-SRV-ID-1). When none is free, a peer may have hung up already
    /// without the loop having seen it yet — a peer that closes and at once reconnects, while
    /// the server is still accepting, or in the same wake-up — so every peer socket is polled
    /// once and those that hung up (or sent data, SRV-GONE-1) are freed first: only a server
    /// that is really full refuses the newcomer (SRV-ID-2).
    private func allocateID() -> UInt32? {
        if let id = ids.allocate() { return id }
        let candidates = peers.filter { peer in !peer.departing && !departures.contains { $0.0 === peer } }
        let ready = (try? FileDescriptor.readyForReading(candidates.map(\.socket))) ?? []
        for index in ready { departures.append((candidates[index], "hang-up (found when a newcomer needed its id)")) }
        guard !departures.isEmpty else { return nil }
        settle()
        return ids.allocate()
    }

    /// Queues a message; a peer whose queue passes a limit — messages (SRV-IO-1) or
    /// descriptors (SRV-IO-4) — is dropped as one that does not read, so that it costs the
    /// others nothing.
    func enqueue(_ message: OutgoingMessage, to peer: Peer) {
        guard !peer.departing else { return }
        let messageLimit = configuration.effectiveQueueLimit
        let descriptorLimit = configuration.queueDescriptorLimit(connected: peers.count)
        var overflow: String?
        if peer.queue.count >= messageLimit {
            overflow = "outgoing queue reached \(messageLimit) messages (peer does not read)"
        } else if peer.queue.descriptorCount + message.fds.count > descriptorLimit {
            overflow = "outgoing queue reached \(descriptorLimit) descriptors (peer does not read)"
        }
        if let overflow {
            if !departures.contains(where: { $0.0 === peer }) { departures.append((peer, overflow)) }
            return
        }
        let wasEmpty = peer.queue.isEmpty
        peer.queue.append(message)
        // Send at once when nothing is waiting, so that messages leave in the reference's
        // global order too (WIRE-SEQ-2 before WIRE-SEQ-3), not only per peer.
        if wasEmpty && !peer.watchingWritable { flush(peer) }
    }

    /// Sends what the peer's socket takes now (SRV-IO-1, SRV-IO-2); watches writability while
    /// anything is left; a failed send makes the peer depart (SRV-IO-3).
    func flush(_ peer: Peer) {
        let logger = self.logger
        let result = peer.queue.flush(to: peer.socket) { item in
            logger.debug("sent", metadata: ["to": "\(peer.id)", "message": "\(item.message)", "fds": "\(item.attachment == nil ? 0 : 1)"])
        }
        switch result {
        case .drained:
            setWatchWritable(peer, false)
        case .wouldBlock:
            setWatchWritable(peer, true)
        case .descriptorsInFlight:
            logger.debug("too many descriptors in flight; retrying", metadata: ["to": "\(peer.id)"])
            retryLater.append(peer)
        case .failed(let error):
            departures.append((peer, "send failed: \(error)"))
        }
    }

    private func setWatchWritable(_ peer: Peer, _ on: Bool) {
        guard peer.watchingWritable != on else { return }
        let events: Epoll.Events = on ? [.readable, .readHangUp, .writable] : [.readable, .readHangUp]
        do {
            try epoll.modify(peer.socket, events: events, token: peer.serial)
            peer.watchingWritable = on
        } catch {
            departures.append((peer, "cannot watch its socket: \(error)"))
        }
    }

    /// The departure sequence: close the socket, zero the State Table entry (SRV-GONE-2),
    /// then PEER_GONE to every remaining peer in connection order (SRV-GONE-3), then release
    /// the eventfds and the id (SRV-GONE-4). A v1 server sends the ID without a descriptor
    /// instead and has no table (V1-SRV-GONE-1).
    func free(_ peer: Peer, reason: String) {
        guard !peer.departing else { return }
        peer.departing = true
        peer.queue.removeAll()
        peer.socket.closeQuietly()  // also removes it from epoll
        peersBySerial[peer.serial] = nil
        if let index = peers.firstIndex(where: { $0 === peer }) { peers.remove(at: index) }
        let gone: OutgoingMessage
        switch configuration.dialect {
        case .v2:
            _ = checkSharedMemorySize(before: "clearing the State Table entry of peer \(peer.id)")
            if !sharedMemory.clearState(ofPeer: peer.id) {
                logger.error("could not zero the State Table entry: the shared memory shrank under it (a peer truncated it)", metadata: ["id": "\(peer.id)"])
            }
            gone = OutgoingMessage(.peerGone(id: peer.id), attachment: nil)
        case .v1:
            // No State Table (V1-SRV-SHM-1); the ID without a descriptor (V1-WIRE-GONE-1).
            gone = OutgoingMessage(V1ServerMessage.peerGone(id: UInt16(peer.id)), attachment: nil)
        }
        for other in peers {
            enqueue(gone, to: other)
        }
        peer.eventFDs.removeAll()  // closed once no queued message carries them
        peer.announcements.removeAll()
        ids.release(peer.id)
        publish()
        count(departed: 1)
        logger.info("peer left", metadata: ["id": "\(peer.id)", "reason": "\(reason)", "peers": "\(peers.count)"])
    }
}

extension IvshmemServer {
    /// SRV-SHM-6: puts the shared memory back to its configured size when a peer changed it
    /// (only a POSIX object or a file can change; a memfd is sealed, SRV-SHM-5), and logs
    /// it. False when the size is wrong and could not be restored.
    func checkSharedMemorySize(before action: String) -> Bool {
        switch sharedMemory.ensureConfiguredSize() {
        case .intact:
            return true
        case .restored(let found):
            logger.error("the shared memory was resized by a peer; restored its configured size (content beyond the smaller size is lost)", metadata: [
                "found": "\(found)", "size": "\(sharedMemory.size)", "before": "\(action)",
            ])
            return true
        case .failed(let found, let error):
            logger.error("the shared memory was resized by a peer and cannot be restored", metadata: [
                "found": "\(found.map { "\($0)" } ?? "unknown")", "size": "\(sharedMemory.size)", "before": "\(action)", "error": "\(error)",
            ])
            return false
        }
    }

    /// At the descriptor limit, the descriptors a non-reader keeps queued are the ones to give
    /// back (SRV-IO-4): the peer holding the most, if it holds any beyond what it waits for in
    /// a normal set-up, is dropped before anyone else is refused again.
    func dropHeaviestNonReader(because reason: String) {
        let peersInSetup = configuration.dialect == .v1 ? UInt64(peers.count) : configuration.maxPeers
        let setup = 1 + peersInSetup * max(configuration.vectors, 1)
        guard let heaviest = peers.filter({ !$0.departing }).max(by: { $0.queue.descriptorCount < $1.queue.descriptorCount }),
              UInt64(heaviest.queue.descriptorCount) > setup,
              !departures.contains(where: { $0.0 === heaviest })
        else { return }
        departures.append((heaviest, "\(reason) while it held \(heaviest.queue.descriptorCount) descriptors in its queue (peer does not read)"))
    }
}
