import Foundation
@testable import IvshmemPCIDump
import Testing
import IvshmemTestSupport

#if canImport(Glibc)
import Glibc
#endif

@Suite("Malformed dumps give errors, not crashes")
struct MalformedDumpTests {
    static func goldenText() throws -> String { try GoldenCase.named("spec-msix").render() }

    @Test("text lines that are not hex rows are skipped, as in lspci -vxxx output")
    func descriptiveLinesSkipped() throws {
        // libpci's dump reader accepts `lspci -vxxx` output: only `xx: hh …` rows are data.
        let text = try Self.goldenText().replacingOccurrences(of: "40: ", with: "\tCapabilities: [40] Vendor Specific\n40: ")
        #expect(try PCIDumpReader.decode(dumpText: text) == (try PCIDumpReader.decode(dumpText: Self.goldenText())))
    }

    @Test("garbage text without a device line is reported as naming no function")
    func garbage() {
        #expect(throws: PCIDumpError.noFunctions) { try PCIDumpReader.decode(dumpText: "hello world\nthis is not a dump\n") }
        #expect(throws: PCIDumpError.noFunctions) { try PCIDumpReader.decode(dumpText: "") }
    }

    @Test("a malformed line after a device line carries libpci's message")
    func malformedLine() throws {
        var text = try Self.goldenText()
        text = text.replacingOccurrences(of: "40: ", with: "40: this is garbage ")
        let error = try #require(throws: PCIDumpError.self) { try PCIDumpReader.decode(dumpText: text) }
        #expect(error == .libpci("dump: Malformed line"), "got \(error)")
        #expect(error.description.contains("Malformed line"))
    }

    @Test("a line too long for libpci's buffer carries libpci's message")
    func overlongLine() throws {
        let text = try Self.goldenText() + "00: " + String(repeating: "00 ", count: 200) + "\n"
        #expect(throws: PCIDumpError.libpci("dump: line too long or unterminated")) { try PCIDumpReader.decode(dumpText: text) }
    }

    @Test("a row past 4 KiB of config space carries libpci's message")
    func beyondExtendedConfigSpace() throws {
        let text = try Self.goldenText() + "1000: 00 00 00 00\n"
        #expect(throws: PCIDumpError.libpci("dump: At most 4096 bytes of config space are supported")) {
            try PCIDumpReader.decode(dumpText: text)
        }
    }

    @Test("a missing final newline is tolerated (lspci -xxx output always has one)")
    func noFinalNewline() throws {
        let text = try Self.goldenText()
        let f = try PCIDumpReader.decode(dumpText: String(text.dropLast()))
        #expect(f.map(\.vendorID) == [0x110A])
    }

    @Test("the temporary-file fallback decodes the same and leaves no file behind")
    func temporaryFileStaging() throws {
        var template = Array("/tmp/ivshmem-pcidump-test-XXXXXX".utf8CString)
        let dir = try #require(template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }.map { String(cString: $0) })
        defer { rmdir(dir) }
        let text = try Self.goldenText()
        let viaFile = try PCIDumpReader.decode(dumpText: text, staging: .temporaryFile(directory: dir))
        #expect(viaFile == (try PCIDumpReader.decode(dumpText: text)))
        #expect(throws: PCIDumpError.libpci("dump: Malformed line")) {
            try PCIDumpReader.decode(dumpText: text + "f0: zz\n", staging: .temporaryFile(directory: dir))
        }
        #expect((try FileManager.default.contentsOfDirectory(atPath: dir)).isEmpty, "temporary dump files left in \(dir)")
        #expect(throws: PCIDumpError.self) {
            try PCIDumpReader.decode(dumpText: text, staging: .temporaryFile(directory: dir + "/missing"))
        }
    }

    @Test("a dump truncated to fewer than 256 bytes is reported with the byte count", arguments: [1, 4, 8, 15])
    func truncatedRows(_ rows: Int) throws {
        let lines = try Self.goldenText().split(separator: "\n")
        let text = lines.prefix(1 + rows).joined(separator: "\n") + "\n"
        #expect(throws: PCIDumpError.truncated(address: "00:05.0", bytes: rows * 16, needed: 256)) {
            try PCIDumpReader.decode(dumpText: text)
        }
    }

    @Test("a dump cut mid-line is reported as truncated")
    func cutMidLine() throws {
        let text = try Self.goldenText()
        // "f0: 00 … 00\n" loses its newline and last 9 characters: 13 bytes of that row remain.
        let cut = String(text.prefix(text.count - 10))
        #expect(throws: PCIDumpError.truncated(address: "00:05.0", bytes: 0xF0 + 13, needed: 256)) {
            try PCIDumpReader.decode(dumpText: cut)
        }
    }

    @Test("several functions decode in file order")
    func severalFunctions() throws {
        let a = try GoldenCase.named("spec-msix").render()
        let b = try GoldenCase.named("qemu-rfc-msix").render().replacingOccurrences(of: "00:05.0 ", with: "00:06.0 ")
        let fs = try PCIDumpReader.decode(dumpText: a + "\n" + b)
        #expect(fs.map(\.address) == ["00:05.0", "00:06.0"])
        #expect(fs.map(\.subsystemVendorID) == [0x110A, 0x1AF4])
    }

    @Test("decoding leaks no file descriptors, on success or on error")
    func noDescriptorLeaks() throws {
        let good = try Self.goldenText()
        // Warm up anything lazily opened once per process.
        _ = try PCIDumpReader.decode(dumpText: good)
        let before = DescriptorCount.current()
        for _ in 0..<50 {
            _ = try PCIDumpReader.decode(dumpText: good)
            _ = try? PCIDumpReader.decode(dumpText: good.replacingOccurrences(of: "40: ", with: "40: zz garbage "))
            _ = try? PCIDumpReader.decode(dumpText: "garbage\n")
        }
        // Other tests run in parallel and open descriptors too; a leak of one per decode would
        // show as 150 more.
        let after = DescriptorCount.settle(toAtMost: before + 49)
        #expect(after < before + 50, "descriptors before \(before), after \(after)")
    }
}
