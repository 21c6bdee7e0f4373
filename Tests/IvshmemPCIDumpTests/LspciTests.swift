import Foundation
import IvshmemPCIDump
import Testing

@Suite("lspci reads the golden dumps")
struct LspciTests {
    static func lspci() throws -> String {
        guard let path = ChildProcess.find("lspci") else {
            Issue.record("lspci not found on PATH or in /usr/sbin, /sbin: install pciutils (`make` installs it, or apt-get install -y pciutils)")
            throw LspciMissing()
        }
        return path
    }
    struct LspciMissing: Error {}

    @Test("CFG-ID-1, CFG-ID-2, CFG-CLASS-1, CFG-CLASS-2, CAP-VS-2, MSIX-CAP-2: lspci -F FILE -vvv -nn shows 110a:4106, class ff40, the vendor cap length and MSI-X Count",
          arguments: GoldenCase.all)
    func lspciShowsDevice(_ c: GoldenCase) throws {
        let lspci = try Self.lspci()
        let r = try ChildProcess.run(lspci, ["-F", c.url.path, "-vvv", "-nn"])
        #expect(r.status == 0, "lspci exited \(r.status): \(r.stderr)")
        let out = r.stdout
        let context = "lspci -F \(c.url.path) -vvv -nn printed:\n\(out)\(r.stderr.isEmpty ? "" : "stderr:\n\(r.stderr)")"
        let first = out.split(separator: "\n").first.map(String.init) ?? ""
        #expect(first.hasPrefix("00:05.0 "), "\(context)")
        #expect(first.contains("[110a:4106]"), "\(context)")
        // Protocol 4001h puts 40h in the sub-class, so lspci prints class [ff40] and prog-if 01.
        #expect(first.contains("[ff40]"), "\(context)")
        #expect(first.contains("(prog-if 01)"), "\(context)")
        let subsystem = c.profile == "qemu-rfc" ? "[1af4:1100]" : "[110a:4106]"
        #expect(out.contains("Subsystem: ") && out.contains(subsystem), "\(context)")
        let length = c.profile == "jailhouse" ? "20" : "18"
        #expect(out.contains("Vendor Specific Information: Len=\(length)"), "\(context)")
        if c.variant == "intx" {
            #expect(!out.contains("MSI-X"), "\(context)")
            #expect(out.contains("Interrupt: pin A"), "\(context)")
        } else {
            #expect(out.contains("MSI-X: Enable- Count=4 Masked-"), "\(context)")
            #expect(out.contains("Vector table: BAR=1 offset=00000000"), "\(context)")
            let pba = c.profile == "jailhouse" ? "00000100" : "00000800"
            #expect(out.contains("PBA: BAR=1 offset=\(pba)"), "\(context)")
            #expect(!out.contains("Interrupt: pin"), "\(context)")
        }
        let vendorOffset = c.profile == "qemu-rfc" ? "4c" : "40"
        let msixOffset = c.profile == "qemu-rfc" ? "40" : "60"
        #expect(out.contains("Capabilities: [\(vendorOffset)] Vendor Specific Information"), "\(context)")
        if c.variant != "intx" { #expect(out.contains("Capabilities: [\(msixOffset)] MSI-X"), "\(context)") }
        if c.profile == "jailhouse" {
            #expect(!out.contains("Region 2"), "\(context)")
        } else {
            #expect(out.contains("Region 2: Memory at <unassigned> (64-bit, prefetchable)"), "\(context)")
        }
        // A memory BAR that reads 0 (BAR0, BAR1 before assignment) is not listed in dump mode:
        // lspci has neither an address, nor flags, nor a size for it.
        if c.variant == "io" {
            #expect(out.contains("Region 0: I/O ports at <unassigned>"), "\(context)")
        } else {
            #expect(!out.contains("Region 0"), "\(context)")
        }
        #expect(!out.contains("Region 1"), "\(context)")
    }

    @Test("the posix_spawn helper captures stdout, stderr and the exit status")
    func spawnHelper() throws {
        let sh = try #require(ChildProcess.find("sh"))
        let r = try ChildProcess.run(sh, ["-c", "echo out; echo err >&2; exit 3"])
        #expect(r.stdout == "out\n")
        #expect(r.stderr == "err\n")
        #expect(r.status == 3)
    }
}
