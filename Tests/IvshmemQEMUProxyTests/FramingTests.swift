import IvshmemQEMUProxy
import Testing

@Suite("QEMU proxy framing")
struct FramingTests {
    @Test("RET carries an 8-byte little-endian value after a 16-byte header (CFG-ACC-1)")
    func replyLayout() {
        let r = ProxyFrame.reply(0x1122_3344_5566_7788)
        #expect(r.count == 24)
        #expect(Array(r[0..<4]) == [1, 0, 0, 0])
        #expect(Array(r[8..<16]) == [8, 0, 0, 0, 0, 0, 0, 0])
        #expect(Array(r[16..<24]) == [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11])
    }
}
