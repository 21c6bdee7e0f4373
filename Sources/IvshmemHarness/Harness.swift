import IvshmemModel
import IvshmemPlatform
import IvshmemPosix
import IvshmemServer
import IvshmemSpec
import IvshmemTransport
import Logging
import IvshmemSync

/// Where the harness's peers find their server.
public enum ServerSource: Sendable {
    /// Our server, started in this process on a private socket.
    case embedded(ServerConfiguration)
    /// A server somebody else runs (ours or the reference one).
    case external(socketPath: String)
}

/// What a newly joined peer's "firmware and driver" have done before the test takes over.
public enum PeerSetup: String, Sendable {
    /// Nothing: BARs unassigned, decoding off, MSI-X off (for driver tests).
    case raw
    /// BARs assigned, memory decode and bus mastering on.
    case firmware
    /// Firmware, plus MSI-X enabled with entry v = (0xFEE00000, data v) unmasked, and
    /// Interrupt Control 1: ready to receive.
    case ready
}

/// A register-level test harness in the spirit of QEMU's libqos: peers are emulated devices,
/// each on its own virtual PCI platform (its own guest), attached to one server. Every access
/// through a `HarnessPeer`, every interrupt, link event and finding goes into one trace.
public final class Harness: @unchecked Sendable {
    public let trace = TraceRecorder()
    /// The spec tables devices are built from (a modified copy for `spec check`).
    public let tables: SpecTables
    public let socketPath: String
    private let embedded: PrivateServer?
    private let peers = Locked<[HarnessPeer]>([])
    /// Connections made to the server: joins (failed ones too) and raw clients.
    private let opened = Locked(0)

    public init(server: ServerSource, tables: SpecTables = .builtIn) throws {
        self.tables = tables
        switch server {
        case .external(let path):
            socketPath = path
            embedded = nil
        case .embedded(let config):
            let running = try PrivateServer(configuration: config, prefix: "ivshmem2-harness", label: "ivshmem2.harness.server")
            socketPath = running.socketPath
            embedded = running
        }
    }

    deinit { close() }

    /// Attaches a new device, plugs it in at 00:03.0 of its own platform and prepares it.
    public func join(name: String, options: AttachOptions = AttachOptions(), setup: PeerSetup = .ready) throws -> HarnessPeer {
        opened.withLock { $0 += 1 }
        let link = try AttachedDevice.attach(socketPath: socketPath, options: options, tables: tables)
        let peer: HarnessPeer
        do { peer = try HarnessPeer(name: name, link: link, trace: trace) } catch {
            link.close()
            throw error
        }
        trace.record(name, .lifecycle, detail: "joined as peer \(link.device.id) (profile \(options.profile))")
        peers.withLock { $0.append(peer) }
        do { try peer.prepare(setup) } catch {
            leave(peer)
            throw error
        }
        return peer
    }

    /// How many peers an embedded server holds (nil for an external server).
    public var serverConnectionCount: Int? {
        embedded.map { t in let c = t.server.counters; return c.accepted - c.departed }
    }

    /// Counts a connection made to the server outside ``join(name:options:setup:)`` (a raw
    /// wire client), for ``waitForServerConnections(_:timeout:)``.
    public func noteConnection() { opened.withLock { $0 += 1 } }

    /// Waits until an embedded server has dealt with every connection made so far (accepted or
    /// refused it) and holds at most `live` of them: it has handled the hang-ups of everything
    /// closed. True at once for an external server (nothing to ask).
    public func waitForServerConnections(_ live: Int, timeout: Double) -> Bool {
        guard let server = embedded?.server else { return true }
        let made = opened.withLock { $0 }
        return Monotonic.poll(timeout: timeout) {
            let c = server.counters
            return c.accepted + c.refused >= made && c.accepted - c.departed <= live
        }
    }

    /// Detaches a peer: the server announces its departure to the others.
    public func leave(_ peer: HarnessPeer) {
        peers.withLock { $0.removeAll { $0 === peer } }
        peer.link.close()
        trace.record(peer.name, .lifecycle, detail: "left")
    }

    public var joined: [HarnessPeer] { peers.withLock { $0 } }

    /// Detaches every peer and stops an embedded server. Idempotent.
    public func close() {
        for p in peers.withLock({ p in defer { p.removeAll() }; return p }) { p.link.close() }
        embedded?.stop()
    }
}
