import Foundation
import IvshmemModel
import IvshmemPCIDump
import Testing
import IvshmemTestSupport

/// The golden config-space dumps in fixtures/golden: one per profile and variant, each exactly
/// the output of `ivshmem2 dump-config` for that device.
struct GoldenCase: Sendable, CustomTestStringConvertible {
    var profile: String
    var variant: String
    var configuration: DeviceConfiguration

    var name: String { "\(profile)-\(variant)" }
    var testDescription: String { name }
    var url: URL { GoldenCase.directory.appendingPathComponent("\(name).lspci") }

    /// Shared parameters: 4 peers, protocol 4001h, R/W and output sections of 4 KiB.
    static func base(_ profile: String) -> DeviceConfiguration {
        DeviceConfiguration(profile: profile, maxPeers: 4, vectors: 4, protocolType: 0x4001,
                            rwSectionSize: 0x1000, outputSectionSize: 0x1000)
    }

    static let all: [GoldenCase] = {
        var cases = ["spec", "jailhouse", "qemu-rfc"].map { GoldenCase(profile: $0, variant: "msix", configuration: base($0)) }
        var intx = base("spec")
        intx.vectors = 1
        intx.interrupts = .intx(pin: 1)
        cases.append(GoldenCase(profile: "spec", variant: "intx", configuration: intx))
        var io = base("spec")
        io.registerSpace = .io
        cases.append(GoldenCase(profile: "spec", variant: "io", configuration: io))
        return cases
    }()

    static func named(_ name: String) -> GoldenCase { all.first { $0.name == name }! }

    static let directory = Repository.root.appendingPathComponent("fixtures/golden")

    /// A fresh device of this case, as `ivshmem2 dump-config` builds it.
    func makeDevice() throws -> IvshmemDevice {
        let fabric = try LocalFabric(template: configuration)
        return try fabric.addDevice(id: configuration.id)
    }

    /// What `ivshmem2 dump-config` prints for this case.
    func render() throws -> String {
        let device = try makeDevice()
        return "00:05.0 Inter-VM shared memory v2 [110a:4106] (profile \(device.profile.name))\n" + ConfigDump.lspciHex(device)
    }

    /// The case's device decoded by libpci from its freshly rendered dump.
    func decoded() throws -> DecodedFunction {
        let functions = try PCIDumpReader.decode(dumpText: try render())
        try #require(functions.count == 1, "expected one function in the \(name) dump, got \(functions.count)")
        return functions[0]
    }
}

/// A unified-diff-like rendering of the line differences between `old` and `new`
/// (LCS-based, with one line of context around each change).
func lineDiff(old: String, new: String, oldName: String, newName: String) -> String {
    let a = old.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    let b = new.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    var lcs = Array(repeating: Array(repeating: 0, count: b.count + 1), count: a.count + 1)
    for i in stride(from: a.count - 1, through: 0, by: -1) {
        for j in stride(from: b.count - 1, through: 0, by: -1) {
            lcs[i][j] = a[i] == b[j] ? lcs[i + 1][j + 1] + 1 : max(lcs[i + 1][j], lcs[i][j + 1])
        }
    }
    var ops: [(Character, String, Int)] = []  // (kind, line, old line number)
    var i = 0, j = 0
    while i < a.count || j < b.count {
        if i < a.count, j < b.count, a[i] == b[j] { ops.append((" ", a[i], i)); i += 1; j += 1 }
        else if i < a.count, j == b.count || lcs[i + 1][j] >= lcs[i][j + 1] { ops.append(("-", a[i], i)); i += 1 }
        else { ops.append(("+", b[j], i)); j += 1 }
    }
    var out = "--- \(oldName)\n+++ \(newName)\n"
    var lastPrinted = -2
    for (k, op) in ops.enumerated() {
        let near = ops[max(0, k - 1)...min(ops.count - 1, k + 1)].contains { $0.0 != " " }
        guard near else { continue }
        if k != lastPrinted + 1 { out += "@@ line \(op.2 + 1) @@\n" }
        out += "\(op.0)\(op.1)\n"
        lastPrinted = k
    }
    return out
}

@Suite("Golden config-space dumps")
struct GoldenDumpTests {
    @Test("the model's config-space dump matches fixtures/golden byte for byte (UPDATE_GOLDEN=1 rewrites)",
          arguments: GoldenCase.all)
    func goldenMatches(_ c: GoldenCase) throws {
        let fresh = try c.render()
        if ProcessInfo.processInfo.environment["UPDATE_GOLDEN"] == "1" {
            try FileManager.default.createDirectory(at: GoldenCase.directory, withIntermediateDirectories: true)
            // Atomic replace: tests reading the golden files concurrently never see half a file.
            try Data(fresh.utf8).write(to: c.url, options: .atomic)
            return
        }
        guard let golden = try? Data(contentsOf: c.url) else {
            Issue.record("missing golden file \(c.url.path): regenerate with UPDATE_GOLDEN=1 swift test --filter IvshmemPCIDumpTests")
            return
        }
        if golden != Data(fresh.utf8) {
            let diff = lineDiff(old: String(decoding: golden, as: UTF8.self), new: fresh,
                                oldName: "fixtures/golden/\(c.name).lspci", newName: "model (\(c.name))")
            Issue.record("""
                the model's config space for \(c.name) differs from the golden dump. If the change is \
                deliberate, regenerate with UPDATE_GOLDEN=1 swift test --filter IvshmemPCIDumpTests
                \(diff)
                """)
        }
    }

    @Test("the line diff shows changed rows with - and +")
    func diffFormat() {
        let d = lineDiff(old: "a\nb\nc\nd\n", new: "a\nB\nc\nd\n", oldName: "old", newName: "new")
        #expect(d == "--- old\n+++ new\n@@ line 1 @@\n a\n-b\n+B\n c\n")
    }
}
