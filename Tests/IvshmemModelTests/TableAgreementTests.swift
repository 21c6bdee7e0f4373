import IvshmemModel
import IvshmemSpec
import Testing

/// Each profile, in every interrupt mode / region kind it supports, against the reset values the
/// tables declare. Parameters are computed here from the spec text, independently of the model's
/// own DeviceLayout, so a wrong parameter, a field the model drops, or a table edit the model does
/// not follow all fail.
@Suite("Model agrees with spec/tables")
struct TableAgreementTests {

    struct Case: CustomTestStringConvertible, Sendable {
        var config: DeviceConfiguration
        var testDescription: String { "\(config.profileName) \(config.interrupts) \(config.registerSpace)" }
    }

    static let cases: [Case] = {
        var out: [Case] = []
        for p in allProfiles {
            out.append(Case(config: makeConfig(profile: p, id: 1, vectors: 5, maxPeers: 3, rw: 0x3000, out: 0x1000, protocolType: 0xC0DE, baseAddress: 0x8_0000_0000)))
        }
        out.append(Case(config: makeConfig(profile: "spec", id: 1, maxPeers: 3, rw: 0x3000, out: 0x1000, interrupts: .intx(pin: 2), protocolType: 0x4001)))
        out.append(Case(config: makeConfig(profile: "jailhouse", id: 1, maxPeers: 3, rw: 0x3000, out: 0x1000, interrupts: .intx(pin: 4), protocolType: 0x4001)))
        out.append(Case(config: makeConfig(profile: "spec", id: 1, vectors: 2, maxPeers: 1100, rw: 0, out: 0x1000, registerSpace: .io, protocolType: 1)))
        return out
    }()

    /// The value of each table @parameter for `c`, from the spec text.
    static func specParameters(_ c: DeviceConfiguration) -> [String: UInt64] {
        let jail = c.profileName == "jailhouse", qemu = c.profileName == "qemu-rfc"
        let msix = c.interrupts == .msix
        let n = UInt64(c.maxPeers)
        let st: UInt64 = n <= 1024 ? 0x1000 : (4 * n + 0xFFF) / 0x1000 * 0x1000
        let total = st + c.rwSectionSize + n * c.outputSectionSize
        let pbaOffset: UInt64 = jail ? 0x100 : UInt64(max(0x800, 16 * c.vectors))
        let bar1Size: UInt64 = jail ? 0x200 : pow2ceil(max(0x1000, pbaOffset + UInt64(8 * ((c.vectors + 63) / 64))))
        let bar2Size = pow2ceil(max(total, 0x1000))
        let io = c.registerSpace == .io
        var p: [String: UInt64] = [
            "id": UInt64(c.id), "maxPeers": n,
            "protocolLow": UInt64(c.protocolType & 0xFF), "protocolHigh": UInt64(c.protocolType >> 8),
            "commandWritable": io ? 0x0407 : 0x0406,
            "subsystemVendorID": qemu ? 0x1AF4 : 0x110A, "subsystemID": qemu ? 0x1100 : 0x4106,
            "capabilityPointer": qemu ? 0x4C : 0x40,
            "bar0Type": io ? 1 : 0, "bar0Writable": io ? 0xFFFF_FF00 : 0xFFFF_F000,
            "bar1Type": 0, "bar1Writable": msix ? (~(bar1Size - 1)) & 0xFFFF_FFF0 : 0,
            "bar2Type": jail ? 0 : 0xC,
            "bar2WritableLow": jail ? 0 : ~(bar2Size - 1) & 0xFFFF_FFF0,
            "bar2WritableHigh": jail ? 0 : ~(bar2Size - 1) >> 32,
            "registerRegionSize": io ? 0x100 : 0x1000,
            "vendorCapabilityLength": jail ? 0x20 : 0x18,
            "stateTableSize": st, "rwSectionSize": c.rwSectionSize, "outputSectionSize": c.outputSectionSize,
            "baseAddress": jail ? c.baseAddress : 0,
            "msixTableSizeField": UInt64(c.vectors - 1), "msixTableOffsetBIR": 1, "msixPBAOffsetBIR": pbaOffset | 1,
        ]
        if case .intx(let pin) = c.interrupts { p["interruptPin"] = UInt64(pin) } else { p["interruptPin"] = 0 }
        return p
    }

    static func read(_ d: IvshmemDevice, _ offset: Int, _ width: Int) -> UInt64 {
        switch width {
        case 1: return UInt64(d.cfg8(offset))
        case 2: return UInt64(d.cfg16(offset))
        case 4: return UInt64(d.cfg32(offset))
        default: return d.cfg64(offset)
        }
    }

    @Test("CFG-ID-1, CFG-ID-5, CFG-CAP-1, CFG-BAR-8, CAP-VS-1, MSIX-CAP-1: every table field reads its reset value", arguments: cases)
    func resetValues(c: Case) throws {
        let tables = SpecTables.builtIn
        let (_, d) = try makeDevice(c.config)
        var params = Self.specParameters(c.config)
        let jail = c.config.profileName == "jailhouse"
        let msix = c.config.interrupts == .msix
        // capability placement from the spec text (CFG-CAP-2)
        var caps: [(kind: String, offset: Int)] = c.config.profileName == "qemu-rfc" ? [("vendor", 0x4C), ("msix", 0x40)] : [("vendor", 0x40), ("msix", 0x60)]
        if !msix { caps.removeAll { $0.kind == "msix" } }
        var checked = 0, covered = Set<Int>()

        func check(_ fields: [RegisterField], base: Int, next: UInt64?) {
            params["next"] = next
            for f in fields {
                if f.when == "baseAddress" && !jail { continue }
                let expected: UInt64
                do {
                    expected = try f.reset.resolve(field: f.name) { params[$0] }
                } catch {
                    Issue.record("table field '\(f.name)' uses a parameter the spec does not define: \(error)")
                    continue
                }
                let mask: UInt64 = f.width == 8 ? .max : (1 << UInt64(8 * f.width)) - 1
                let got = Self.read(d, base + f.offset, f.width)
                #expect(got == expected & mask, "\(c.testDescription): '\(f.name)' at 0x\(String(base + f.offset, radix: 16))")
                // also the model's own parameter resolution agrees with the spec's
                if case .parameter(let name) = f.reset, name != "next" {
                    #expect(d.layout.parameter(name) == params[name], "parameter @\(name)")
                }
                checked += 1
                for i in 0..<f.width { covered.insert(base + f.offset + i) }
            }
        }
        check(tables.header, base: 0, next: nil)
        for (i, cap) in caps.enumerated() {
            let next = i + 1 < caps.count ? UInt64(caps[i + 1].offset) : 0
            check(cap.kind == "vendor" ? tables.vendorCapability : tables.msixCapability, base: cap.offset, next: next)
        }
        #expect(Int(d.cfg8(caps[0].offset)) == Int(tables.vendorCapabilityID))
        if msix { #expect(Int(d.cfg8(caps[1].offset)) == Int(tables.msixCapabilityID)) }
        // every byte the tables do not declare reads 0 (CFG-RSV-1, CFG-RSV-2)
        for off in 0..<256 where !covered.contains(off) {
            #expect(d.cfg8(off) == 0, "\(c.testDescription): undeclared byte 0x\(String(off, radix: 16))")
        }
        #expect(checked >= tables.header.count)
        #expect(d.findings.isEmpty)
    }

    @Test("CFG-CMD-1, REG-IC-3, REG-ST-6, MSIX-TBL-3: BAR0 and MSI-X entry tables match the model", arguments: cases)
    func registerTables(c: Case) throws {
        let tables = SpecTables.builtIn
        let (_, d) = try makeDevice(c.config)
        let params = Self.specParameters(c.config)
        for f in tables.bar0 {
            let expected = f.readable ? try f.reset.resolve(field: f.name) { params[$0] } : 0
            #expect(UInt64(d.readRegister(UInt64(f.offset))) == expected, "'\(f.name)'")
        }
        guard c.config.interrupts == .msix else { return }
        for v in 0..<c.config.vectors {
            for f in tables.msixTableEntry {
                let expected = try f.reset.resolve(field: f.name) { params[$0] }
                #expect(d.barRead(1, offset: UInt64(16 * v + f.offset), size: f.width) == expected, "entry \(v) '\(f.name)'")
            }
        }
    }
}
