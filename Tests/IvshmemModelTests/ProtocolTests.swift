import IvshmemModel
import Testing

@Suite("Protocols")
struct ProtocolTests {

    @Test("PROTO-VAL-1, PROTO-VAL-2, PROTO-VAL-3, PROTO-VAL-4, PROTO-VAL-5, PROTO-VAL-6: protocol number ranges")
    func ranges() {
        let cases: [(UInt16, IvshmemProtocol.Kind)] = [
            (0x0000, .undefined), (0x0001, .virtualEthernet), (0x0002, .reserved), (0x3FFF, .reserved),
            (0x4000, .userDefined), (0x4001, .userDefined), (0x7FFF, .userDefined),
            (0x8000, .virtioFrontEnd), (0x8003, .virtioFrontEnd), (0xBFFF, .virtioFrontEnd),
            (0xC000, .virtioBackEnd), (0xC003, .virtioBackEnd), (0xFFFF, .virtioBackEnd),
        ]
        for (raw, kind) in cases {
            #expect(IvshmemProtocol(raw).kind == kind, "0x\(String(raw, radix: 16))")
        }
        // every value has exactly one meaning, and the ranges are contiguous
        var last = IvshmemProtocol(0).kind
        var changes = 0
        for raw in UInt16(1)...UInt16.max {
            let k = IvshmemProtocol(raw).kind
            if k != last { changes += 1; last = k }
        }
        #expect(changes == 5)
    }

    @Test("PROTO-VIRTIO-1: bit 14 selects the virtio back-end; the other 14 bits are shared")
    func virtioSides() {
        let front = IvshmemProtocol(0x8003), back = IvshmemProtocol(0xC003)
        #expect(front.isVirtio && back.isVirtio)
        #expect(!front.isVirtioBackEnd && back.isVirtioBackEnd)
        #expect(front.virtioDeviceType == 3 && back.virtioDeviceType == 3)
        #expect(front.virtioCounterpart == back && back.virtioCounterpart == front)
        #expect(IvshmemProtocol(0x4001).virtioCounterpart == nil)
        #expect(IvshmemProtocol(0x4001).virtioDeviceType == nil)
        #expect(!IvshmemProtocol(0x4001).isVirtioBackEnd)
    }

    @Test("PROTO-VIRTIO-1, DEV-CFG-8: the two sides of a virtio link may differ only in bit 14")
    func virtioLink() throws {
        let fabric = try LocalFabric(template: makeConfig(protocolType: 0xC003))
        let back = try fabric.addDevice()
        let front = try fabric.addDevice { $0.protocolType = 0x8003 }
        #expect(back.cfg8(0x09) | back.cfg8(0x0A) << 8 == 0xC003)
        #expect(front.cfg8(0x09) | front.cfg8(0x0A) << 8 == 0x8003)
        let other = try LocalFabric(template: makeConfig(maxPeers: 3, protocolType: 0xC003))
        _ = try other.addDevice()
        let e = #expect(throws: DeviceConfigurationError.self) { try other.addDevice { $0.protocolType = 0x8004 } }
        #expect(e?.parameter == "protocolType")
    }

    @Test("PROTO-VAL-7: protocol reported unchanged; behaviour identical for every value", arguments: [UInt16(0x0000), 0x0001, 0x1234, 0x4001, 0x8003, 0xC003, 0xFFFF])
    func noBehaviour(proto: UInt16) throws {
        func run(_ p: UInt16) throws -> ([UInt32], [RecordingSink.Event], [UInt32]) {
            let rig = try makeRig(vectors: 2, peers: 2, protocolType: p)
            rig[0].driverEnableMSIX()
            rig[1].ring(0, vector: 1)
            rig[1].writeRegister(Reg.state, 3)
            rig[0].reset()
            var cfg = (0..<64).map { rig[0].cfg32(4 * $0) }
            cfg[2] &= 0xFF00_00FF  // class code bytes 09h/0Ah hold the protocol
            let regs = stride(from: UInt64(0), to: 0x20, by: 4).map { rig[1].readRegister($0) }
            return (cfg, rig.sinks[0].events, regs)
        }
        let (_, d) = try makeDevice(makeConfig(protocolType: proto))
        #expect(d.cfg8(0x09) | d.cfg8(0x0A) << 8 == UInt32(proto))
        d.reset()
        #expect(d.cfg8(0x09) | d.cfg8(0x0A) << 8 == UInt32(proto))
        let reference = try run(0x0000)
        let this = try run(proto)
        #expect(this.0 == reference.0)
        #expect(this.1 == reference.1)
        #expect(this.2 == reference.2)
    }
}
