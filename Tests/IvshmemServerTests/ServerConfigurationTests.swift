import IvshmemServer
import IvshmemSpec
import Testing

/// Option parsing and validation (SRV-CFG-*), the virtio role rule (SRV-VIRTIO-*) and id
/// allocation (SRV-ID-1), without processes.
extension IvshmemServerTestSuite {
@Suite("Server configuration")
struct ServerConfigurationTests {
    @Test("SRV-CFG-1: defaults are the reference's (socket, 4 MiB, 0 output, 2 peers, 1 vector, protocol 0)")
    func defaults() throws {
        let config = ServerConfiguration()
        #expect(config.socketPath == "/tmp/ivshmem_socket")
        #expect(config.size == 4 * 1024 * 1024)
        #expect(config.outputSectionSize == 0)
        #expect(config.maxPeers == 2)
        #expect(config.vectors == 1)
        #expect(config.protocolValue == 0)
        #expect(config.mode == 0o600)
        _ = try config.validate()
    }

    @Test("SRV-CFG-2: sizes take K/M/G suffixes, numbers take 0x (strtoull base 0)")
    func parsing() {
        #expect(OptionValueParsing.size("1M") == 1 << 20)
        #expect(OptionValueParsing.size("64K") == 64 << 10)
        #expect(OptionValueParsing.size("2g") == 2 << 30)
        #expect(OptionValueParsing.size("4194304") == 4_194_304)
        #expect(OptionValueParsing.size("1MiB") == 1 << 20)
        #expect(OptionValueParsing.size("0x10000") == 0x10000)
        #expect(OptionValueParsing.size("") == nil)
        #expect(OptionValueParsing.size("12Q") == nil)
        #expect(OptionValueParsing.size("99999999999999999999G") == nil)
        #expect(OptionValueParsing.unsigned("0x4001") == 0x4001)
        #expect(OptionValueParsing.unsigned("16385") == 16385)
        #expect(OptionValueParsing.unsigned("010") == 8)
        #expect(OptionValueParsing.unsigned("-1") == nil)
        #expect(OptionValueParsing.unsigned("4x") == nil)
        #expect(OptionValueParsing.mode("0660") == 0o660)
        #expect(OptionValueParsing.mode("9") == nil)
    }

    func failure(_ change: (inout ServerConfiguration) -> Void) -> ConfigurationError? {
        var config = ServerConfiguration()
        change(&config)
        do { _ = try config.validate(); return nil } catch { return error }
    }

    @Test("SRV-CFG-2: each invalid option is refused with a message naming it")
    func validation() {
        #expect(failure { $0.maxPeers = 1 }?.option == "-n/--max-peers")
        #expect(failure { $0.maxPeers = 65537 }?.option == "-n/--max-peers")
        #expect(failure { $0.vectors = 0 }?.option == "-V/--vectors")
        #expect(failure { $0.vectors = 1025 }?.option == "-V/--vectors")
        #expect(failure { $0.protocolValue = 0x10000 }?.option == "-P/--protocol")
        #expect(failure { $0.size = 4097 }?.option == "-l/--size")
        #expect(failure { $0.size = 0 }?.option == "-l/--size")
        #expect(failure { $0.outputSectionSize = 100 }?.option == "-o/--output-section-size")
        #expect(failure { $0.size = 64 << 10; $0.outputSectionSize = 32 << 10 }?.option == "-l/--size")  // 4 K + 2 × 32 K > 64 K
        #expect(failure { $0.backing = .posix(name: "a/b") }?.option == "-M/--shm-name")
        #expect(failure { $0.mode = 0o1777 }?.option == "--mode")
        #expect(failure { $0.socketPath = "" }?.option == "-S/--socket")
        #expect(failure { $0.maxPeers = 65536; $0.size = 256 << 10 } == nil)  // 256 KiB state table fits
    }

    @Test("SRV-CFG-3: the layout is the one the device derives (4 KiB state table up to 1024 peers, larger beyond)")
    func geometry() throws {
        var config = ServerConfiguration()
        config.maxPeers = 4; config.size = 1 << 20; config.outputSectionSize = 64 << 10
        let g = try #require(try config.validate())
        #expect(g == (try SharedMemoryGeometry(totalSize: 1 << 20, maxPeers: 4, outputSectionSize: 64 << 10)))
        #expect(g.stateTableSize == 4096)
        #expect(g.rwSectionSize == (1 << 20) - 4096 - 4 * (64 << 10))
        config.maxPeers = 2048; config.outputSectionSize = 0
        #expect(try config.validate()?.stateTableSize == 8192)
    }

    @Test("SRV-VIRTIO-1: virtio protocols set bit 0x4000 for peer 0 only; others are unchanged")
    func virtioRoles() {
        var config = ServerConfiguration()
        config.protocolValue = 0x8003
        #expect(config.advertisedProtocol(forPeer: 0) == 0xC003)
        #expect(config.advertisedProtocol(forPeer: 1) == 0x8003)
        config.protocolValue = 0xC003  // the back-end bit given on the command line is cleared for front-ends
        #expect(config.advertisedProtocol(forPeer: 0) == 0xC003)
        #expect(config.advertisedProtocol(forPeer: 1) == 0x8003)
        config.protocolValue = 0x4001  // not virtio: sent as is
        #expect(config.advertisedProtocol(forPeer: 0) == 0x4001)
        #expect(config.advertisedProtocol(forPeer: 3) == 0x4001)
    }

    @Test("SRV-VIRTIO-2: a virtio protocol with more than 2 peers is refused")
    func virtioPeers() {
        #expect(failure { $0.protocolValue = 0x8001; $0.maxPeers = 3 }?.option == "-P/--protocol")
        #expect(failure { $0.protocolValue = 0x8001; $0.maxPeers = 2 } == nil)
    }

    @Test("SRV-ID-1: the lowest free id is handed out, ids are reused; SRV-ID-2: none when all are taken")
    func idAllocation() {
        var ids = PeerIDAllocator(capacity: 4)
        #expect((0..<4).map { _ in ids.allocate() } == [0, 1, 2, 3])
        #expect(ids.allocate() == nil)
        ids.release(2); ids.release(0); ids.release(3)
        #expect(ids.allocate() == 0)
        #expect(ids.allocate() == 2)
        #expect(ids.allocate() == 3)
        #expect(ids.allocate() == nil)
        ids.release(7)  // not taken: ignored
        #expect(ids.count == 4)
        // A larger random run against a simple model.
        var big = PeerIDAllocator(capacity: 300)
        var taken = Set<UInt32>()
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<5000 {
            if Bool.random(using: &generator), let victim = taken.randomElement(using: &generator) {
                big.release(victim); taken.remove(victim)
            } else {
                let expected = (0..<300).first { !taken.contains(UInt32($0)) }.map(UInt32.init)
                let got = big.allocate()
                #expect(got == expected)
                if let got { taken.insert(got) }
            }
        }
    }
}
}
