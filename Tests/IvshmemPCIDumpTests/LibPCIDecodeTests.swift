import IvshmemModel
import IvshmemPCIDump
import Testing

/// What each profile's config space must decode to, per spec/ivshmem2.md.
struct ProfileExpectation: Sendable {
    var vendorCapOffset: Int
    var msixCapOffset: Int
    var pbaOffset: UInt32
    var subsystem: (UInt16, UInt16)
    var bar2: Bool

    static func of(_ profile: String) -> ProfileExpectation {
        switch profile {
        case "jailhouse": ProfileExpectation(vendorCapOffset: 0x40, msixCapOffset: 0x60, pbaOffset: 0x100, subsystem: (0x110A, 0x4106), bar2: false)
        case "qemu-rfc": ProfileExpectation(vendorCapOffset: 0x4C, msixCapOffset: 0x40, pbaOffset: 0x800, subsystem: (0x1AF4, 0x1100), bar2: true)
        default: ProfileExpectation(vendorCapOffset: 0x40, msixCapOffset: 0x60, pbaOffset: 0x800, subsystem: (0x110A, 0x4106), bar2: true)
        }
    }
}

@Suite("libpci decodes the model's config space")
struct LibPCIDecodeTests {
    @Test("CFG-ID-1, CFG-ID-2, CFG-ID-3, CFG-ID-4, CFG-ID-5: libpci decodes vendor 110a, device 4106, revision 0, header type 0 and the profile's subsystem IDs",
          arguments: GoldenCase.all)
    func identity(_ c: GoldenCase) throws {
        let f = try c.decoded()
        let want = ProfileExpectation.of(c.profile)
        #expect(f.address == "00:05.0")
        #expect(f.vendorID == 0x110A)
        #expect(f.deviceID == 0x4106)
        #expect(f.revision == 0)
        #expect(f.headerType == 0)
        #expect(f.subsystemVendorID == want.subsystem.0)
        #expect(f.subsystemID == want.subsystem.1)
    }

    @Test("CFG-CMD-1, CFG-STS-1: libpci reads Command 0000h and Status 0010h after construction", arguments: GoldenCase.all)
    func commandStatus(_ c: GoldenCase) throws {
        let f = try c.decoded()
        #expect(f.command == 0)
        #expect(f.status == 0x0010)
    }

    @Test("CFG-CLASS-1, CFG-CLASS-2: libpci decodes base class ff with protocol 4001h in sub-class 40h and prog-if 01h",
          arguments: GoldenCase.all)
    func classCode(_ c: GoldenCase) throws {
        let f = try c.decoded()
        #expect(f.baseClass == 0xFF)
        #expect(f.subClass == 0x40)
        #expect(f.progIF == 0x01)
        #expect(f.classWord == 0xFF40)
    }

    @Test("CFG-CLASS-2: every protocol number round-trips through libpci's sub-class and prog-if",
          arguments: [UInt16(0x0000), 0x0001, 0x4001, 0x8000, 0xFFFF])
    func protocolNumbers(_ proto: UInt16) throws {
        var config = GoldenCase.base("spec")
        config.protocolType = proto
        let f = try GoldenCase(profile: "spec", variant: "proto", configuration: config).decoded()
        #expect(f.baseClass == 0xFF)
        #expect(UInt16(f.subClass) << 8 | UInt16(f.progIF) == proto)
    }

    @Test("CFG-CAP-1, CFG-CAP-2, CFG-CAP-3, CAP-VS-1, MSIX-CAP-1: libpci walks the capability chain 09h → 11h at the profile's offsets",
          arguments: GoldenCase.all)
    func capabilityChain(_ c: GoldenCase) throws {
        let f = try c.decoded()
        let want = ProfileExpectation.of(c.profile)
        #expect(f.capabilitiesPointer == UInt8(want.vendorCapOffset))
        if c.variant == "intx" {
            #expect(f.capabilities == [Capability(id: 0x09, offset: want.vendorCapOffset)])
            #expect(f.msix == nil)
            #expect(f.configSpace[want.vendorCapOffset + 1] == 0, "the vendor cap ends the chain without MSI-X")
        } else {
            #expect(f.capabilities == [Capability(id: 0x09, offset: want.vendorCapOffset), Capability(id: 0x11, offset: want.msixCapOffset)])
            #expect(f.configSpace[want.vendorCapOffset + 1] == UInt8(want.msixCapOffset))
            #expect(f.configSpace[want.msixCapOffset + 1] == 0, "the MSI-X cap's next pointer ends the chain")
        }
    }

    @Test("MSIX-CAP-2, MSIX-CAP-3: libpci reads MSI-X table size = vectors, table BIR 1 offset 0, PBA BIR 1 at the profile's offset",
          arguments: GoldenCase.all.filter { $0.variant != "intx" })
    func msix(_ c: GoldenCase) throws {
        let f = try c.decoded()
        let want = ProfileExpectation.of(c.profile)
        let m = try #require(f.msix)
        #expect(m.offset == want.msixCapOffset)
        #expect(m.tableSize == c.configuration.vectors)
        #expect(m.messageControl == UInt16(c.configuration.vectors - 1), "Enable and Function Mask reset to 0, bits 13:11 read 0")
        #expect(!m.enabled)
        #expect(!m.functionMasked)
        #expect(m.tableBIR == 1)
        #expect(m.tableOffset == 0)
        #expect(m.pbaBIR == 1)
        #expect(m.pbaOffset == want.pbaOffset)
    }

    @Test("MSIX-CAP-2: libpci reads the table size for 1, 16 and 1024 vectors",
          arguments: [("spec", 1), ("spec", 1024), ("jailhouse", 16), ("qemu-rfc", 1024)])
    func msixVectorCounts(_ profile: String, _ vectors: Int) throws {
        var config = GoldenCase.base(profile)
        config.vectors = vectors
        let f = try GoldenCase(profile: profile, variant: "v\(vectors)", configuration: config).decoded()
        #expect(try #require(f.msix).tableSize == vectors)
    }

    @Test("CAP-VS-2, CAP-VS-4, CAP-VS-5, CAP-VS-6, CAP-VS-7, CAP-VS-10: libpci reads the vendor capability's length and size fields",
          arguments: GoldenCase.all)
    func vendorCapability(_ c: GoldenCase) throws {
        let f = try c.decoded()
        let device = try c.makeDevice()
        let v = try #require(f.vendorCapability)
        #expect(v.offset == ProfileExpectation.of(c.profile).vendorCapOffset)
        #expect(v.privilegedControl == 0, "one-shot mode is 0 after construction")
        #expect(v.stateTableSize == UInt32(device.sharedMemoryLayout.geometry.stateTableSize))
        #expect(v.stateTableSize == 0x1000, "4 peers need one page of state table")
        #expect(v.rwSectionSize == 0x1000)
        #expect(v.outputSectionSize == 0x1000)
        if c.profile == "jailhouse" {
            #expect(v.length == 0x20)
            #expect(v.baseAddress == c.configuration.baseAddress)
        } else {
            #expect(v.length == 0x18)
            #expect(v.baseAddress == nil)
        }
    }

    @Test("CAP-VS-8: libpci reads 0 for an absent R/W or output section", arguments: ["spec", "jailhouse", "qemu-rfc"])
    func absentSections(_ profile: String) throws {
        var config = GoldenCase.base(profile)
        config.rwSectionSize = 0
        let noRW = try #require(try GoldenCase(profile: profile, variant: "norw", configuration: config).decoded().vendorCapability)
        #expect(noRW.rwSectionSize == 0)
        #expect(noRW.outputSectionSize == 0x1000)
        config = GoldenCase.base(profile)
        config.outputSectionSize = 0
        let noOut = try #require(try GoldenCase(profile: profile, variant: "noout", configuration: config).decoded().vendorCapability)
        #expect(noOut.outputSectionSize == 0)
        #expect(noOut.rwSectionSize == 0x1000)
    }

    @Test("CFG-BAR-1, CFG-BAR-2, CFG-BAR-3, CFG-BAR-4, CFG-BAR-7, CFG-BAR-8: libpci decodes BAR0 memory or I/O, BAR1, BAR2/3 64-bit prefetchable (none in jailhouse)",
          arguments: GoldenCase.all)
    func bars(_ c: GoldenCase) throws {
        let f = try c.decoded()
        let want = ProfileExpectation.of(c.profile)
        #expect(f.bars.count == 6)
        let bar0 = try #require(f.bar(0))
        if c.variant == "io" {
            #expect(bar0.kind == .io)
            #expect(bar0.register == 0x0000_0001)
            #expect(bar0.libpciBaseAddress == 0x1, "libpci keeps the I/O flag bit in base_addr")
        } else {
            #expect(bar0.kind == .memory32)
            #expect(!bar0.prefetchable)
            #expect(bar0.register == 0)
            #expect(bar0.libpciBaseAddress == 0, "libpci skips a BAR register that reads 0")
        }
        let bar1 = try #require(f.bar(1))
        #expect(bar1.kind == .memory32)
        #expect(bar1.register == 0)
        if want.bar2 {
            let bar2 = try #require(f.bar(2))
            #expect(bar2.kind == .memory64)
            #expect(bar2.is64Bit)
            #expect(bar2.prefetchable)
            #expect(bar2.register == 0x0000_000C)
            #expect(bar2.libpciBaseAddress == 0xC, "libpci folds BAR3 into a 64-bit base_addr with flags 1100b")
            #expect(f.bars[3].kind == .upperHalf)
            #expect(f.bars[3].register == 0)
            #expect(f.bar(3) == nil)
        } else {
            #expect(f.bars[2].register == 0)
            #expect(f.bars[2].kind == .memory32)
            #expect(f.bars[2].libpciBaseAddress == 0)
            #expect(f.bars[3].register == 0)
            #expect(f.bars[3].kind == .memory32)
        }
        #expect(f.bars[4].isZero && f.bars[5].isZero, "BAR4 and BAR5 are unimplemented")
        #expect(f.configSpace[0x30..<0x34].allSatisfy { $0 == 0 }, "no expansion ROM")
    }

    @Test("CFG-INT-1, CFG-INT-2, CFG-INT-3: libpci reads interrupt pin 0 with MSI-X and 1 in the INTx variant, interrupt line 0",
          arguments: GoldenCase.all)
    func interruptPin(_ c: GoldenCase) throws {
        let f = try c.decoded()
        #expect(f.interruptPin == (c.variant == "intx" ? 1 : 0))
        #expect(f.interruptLine == 0)
    }

    @Test("CFG-INT-2: libpci reads each INTx pin 1–4 the spec profile is constructed with", arguments: [UInt8(1), 2, 3, 4])
    func intxPins(_ pin: UInt8) throws {
        var config = GoldenCase.base("spec")
        config.vectors = 1
        config.interrupts = .intx(pin: pin)
        let f = try GoldenCase(profile: "spec", variant: "intx\(pin)", configuration: config).decoded()
        #expect(f.interruptPin == pin)
        #expect(f.msix == nil)
    }

    @Test("libpci's decoding agrees with the model's own config reads", arguments: GoldenCase.all)
    func agreesWithModel(_ c: GoldenCase) throws {
        let f = try c.decoded()
        let device = try c.makeDevice()
        #expect(f.configSpace.count == 256)
        for offset in 0..<256 {
            #expect(UInt32(f.configSpace[offset]) == device.configRead(offset: offset, size: 1), "config byte \(offset)")
        }
    }

    @Test("the golden files on disk decode like the model's fresh dumps", arguments: GoldenCase.all)
    func goldenFilesDecode(_ c: GoldenCase) throws {
        let text = try String(contentsOf: c.url, encoding: .utf8)
        let fromFile = try PCIDumpReader.decode(dumpText: text)
        #expect(fromFile == [try c.decoded()])
    }
}
