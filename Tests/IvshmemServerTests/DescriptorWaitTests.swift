import IvshmemPosix
import Testing

/// The one-descriptor waits of the syscall layer, which the link's WIRE-CLI-21 poll and every
/// test wait go through.
extension IvshmemServerTestSuite {
@Suite("Descriptor waits")
struct DescriptorWaitTests {
    @Test("WIRE-CLI-21: an eventfd is writable and becomes readable once signalled; a descriptor that is not open is an EBADF error, not 'ready'")
    func waits() throws {
        let e = try EventFD.create()
        defer { e.close() }
        #expect(try !e.fd.waitReadable(timeoutMilliseconds: 0))
        #expect(try e.fd.waitWritable(timeoutMilliseconds: 0))
        try e.signal()
        #expect(try e.fd.waitReadable(timeoutMilliseconds: 0))
        // Far above any descriptor this process opens: poll reports POLLNVAL for it.
        let notOpen = FileDescriptor(rawValue: 999_999)
        for wait in [notOpen.waitReadable, notOpen.waitWritable] {
            #expect { _ = try wait(0) } throws: { ($0 as? SystemCallError)?.errno == .badFileDescriptor }
        }
    }
}
}
