import IvshmemSpec
import Foundation
import IvshmemHarness
import IvshmemPosix
import Testing
import IvshmemTestSupport

func fixture(_ relative: String) throws -> Script {
    try ScriptParser.parse(Repository.text(relative), path: relative)
}

@Suite struct ScriptParserTests {
    func error(_ text: String) -> ScriptError? {
        do { _ = try ScriptParser.parse(text, path: "t.ivs"); return nil } catch { return error as? ScriptError }
    }

    @Test("a bad script gets an error with line and column")
    func positions() throws {
        let e1 = try #require(error("join A\nA frobnicate reg:0\n"))
        #expect(e1.line == 2 && e1.column == 3 && e1.reason == .unknownCommand("frobnicate"))
        #expect(e1.description.hasPrefix("t.ivs:2:3: error: unknown command 'frobnicate'"))
        let e2 = try #require(error("join A\nA read32 reg:0xZZ == 1\n"))
        #expect(e2.line == 2 && e2.column == 14 && e2.reason == .notANumber("0xZZ"), "\(e2)")
        let e3 = try #require(error("join A\nA read32 nowhere:0 == 1\n"))
        #expect(e3.reason == .badLocation("nowhere:0") && e3.column == 10)
        let e4 = try #require(error("covers REG-DB-3\n"))
        #expect(e4.reason == .outsideCase(statement: "covers"))
        let e5 = try #require(error("case x\ncovers NOT-AN-ID\n"))
        #expect(e5.reason == .notARequirementID("NOT-AN-ID") && e5.column == 8)
        let e6 = try #require(error("check no-such-check\n"))
        #expect(e6.reason == .unknownCheck("no-such-check", known: BuiltinChecks.all.keys.sorted()))
        let e7 = try #require(error("join A bogus=1\n"))
        guard case .unknownOption("bogus", _) = e7.reason else { Issue.record("\(e7)"); return }
        let e8 = try #require(error("# only a comment\n"))
        #expect(e8.reason == .noStatements)
    }

    @Test("a script with CRLF line endings, or other whitespace between words, parses like one with LF and spaces")
    func lineEndings() throws {
        let lf = "case \"one\"\njoin A\njoin B\nA ring B 1\nB wait irq vector=1\n"
        let crlf = try ScriptParser.parse(lf.replacingOccurrences(of: "\n", with: "\r\n"), path: "t.ivs")
        #expect(crlf.cases.count == 1 && crlf.cases[0].statements.count == 4)
        #expect(crlf.cases[0].statements.map(\.line) == [2, 3, 4, 5])
        if case .ring(let target, let vector) = crlf.cases[0].statements[2].command { #expect(target == "B" && vector == 1) } else {
            Issue.record("line 4 is not a ring: \(crlf.cases[0].statements[2].command)")
        }
        let spaced = try ScriptParser.parse("join A\n\rA\u{00A0}state\u{2003}5\n", path: "t.ivs")
        #expect(spaced.cases[0].statements[1].actor == "A")
        let e = try #require(error("join A\r\nA frobnicate reg:0\r\n"))
        #expect(e.line == 2 && e.column == 3)
    }

    @Test("cases, covers, profiles and profile-conditioned lines parse")
    func structure() throws {
        let s = try ScriptParser.parse("""
            server vectors=3
            case "one"  # comment
            covers REG-DB-3 IRQ-MSIX-1
            profiles spec
            join A
            [qemu-rfc] A write32 reg:0x10c 1
            [!qemu-rfc] A read32 reg:0x0 == 0 mask 0xff
            case two
            join B
            """, path: "t.ivs")
        #expect(s.prelude.count == 1 && s.cases.count == 2)
        #expect(s.cases[0].name == "one" && s.cases[0].covers == ["REG-DB-3", "IRQ-MSIX-1"] && s.cases[0].profiles == ["spec"])
        #expect(s.cases[0].statements.count == 3)
        #expect(s.cases[0].statements[1].applies(to: "qemu-rfc") && !s.cases[0].statements[1].applies(to: "spec"))
        #expect(!s.cases[0].statements[2].applies(to: "qemu-rfc") && s.cases[0].statements[2].applies(to: "jailhouse"))
    }
}

@Suite(.serialized) struct ScriptRunnerTests {
    @Test("REG-ST-3, REG-DB-3: the two-peer example passes end to end")
    func examplePasses() throws {
        let results = ScriptRunner().run(try fixture("fixtures/scripts/two-peers.ivs"))
        #expect(results.count == 1 && results.allSatisfy { $0.passed }, "\(Reports.text(results))")
    }

    @Test("REG-MAXP-1: the deliberately wrong expectation fails with its line, expected vs actual, and the trace")
    func negativeExampleFails() throws {
        let results = ScriptRunner().run(try fixture("fixtures/scripts/negative-wrong-expectation.ivs"))
        let f = try #require(results.first?.failure)
        #expect(f.line == 5)
        #expect(f.statement == "A read32 reg:0x04 == 3")
        #expect(f.expected == "0x3" && f.actual == "0x4")
        #expect(f.traceTail.contains { $0.kind == .mmioRead && $0.value == 4 })
        let text = Reports.text(results)
        #expect(text.contains("FAIL") && text.contains("negative-wrong-expectation.ivs:5:") && text.contains("0 passed, 1 failed"))
    }

    @Test("JUnit XML and JSON reports carry failures")
    func reports() throws {
        let results = ScriptRunner().run(try fixture("fixtures/scripts/negative-wrong-expectation.ivs"))
            + ScriptRunner().run(try fixture("fixtures/scripts/two-peers.ivs"))
        let junit = Reports.junit(results)
        #expect(junit.contains("<testsuites>") && junit.contains("<failure message=") && junit.contains("tests=\"1\" failures=\"1\""))
        let json = try JSONSerialization.jsonObject(with: Data(Reports.json(results).utf8)) as? [[String: Any]]
        #expect(json?.count == 2)
        #expect(json?.first?["status"] as? String == "failed")
        #expect((json?.first?["failure"] as? [String: Any])?["line"] as? Int == 5)
    }

    @Test("SRV-ID-2, SRV-VIRTIO-1: raw wire clients see the connect sequence and a refusal")
    func rawClients() throws {
        let results = ScriptRunner().run(try fixture("fixtures/scripts/server-wire.ivs"))
        #expect(results.allSatisfy { $0.passed }, "\(Reports.text(results))")
    }
}

@Suite(.serialized) struct ConformanceGateTests {
    @Test("the coverage gate reports uncovered and unknown requirement IDs")
    func gate() throws {
        let dir = try FileSystem.makeTemporaryDirectory(template: "/tmp/ivshmem2-conf.XXXXXX")
        defer { FileSystem.removeDirectoryTree(dir) }
        try FileSystem.writeFile(dir + "/a.ivs", bytes: Array("""
            case "max peers"
            covers REG-MAXP-1 ZZZ-NOPE-1
            join A
            A read32 reg:0x04 == 4
            """.utf8))
        let spec = "- **REG-MAXP-1** Max peers.\n- **REG-ID-1** The ID.\n"
        let report = try Conformance.run(directory: dir, specText: spec, profiles: ["spec", "qemu-rfc"])
        #expect(report.uncovered == ["REG-ID-1"])
        #expect(report.unknown.map(\.id) == ["ZZZ-NOPE-1"])
        #expect(!report.ok)
        #expect(report.status("REG-MAXP-1", "spec") == "pass" && report.status("REG-ID-1", "spec") == "-")
        #expect(report.matrix().contains("without a case: REG-ID-1"))
    }
}

@Suite(.serialized) struct SpecCheckTests {
    /// The report for one example change, against the targeted scripts.
    func report(_ change: String) throws -> String {
        let scripts = try ["fixtures/spec-changes/scripts/checks.ivs"].map { rel in
            try ScriptParser.parse(Repository.text(rel), path: rel)
        }
        let modified = try SpecTables(overlaying: Repository.path("fixtures/spec-changes/\(change)"))
        return try SpecCheck.run(modified: modified, scripts: scripts, profiles: Conformance.profiles).render()
    }

    @Test("CAP-VS-7, CFG-BAR-4: spec check reports a Base Address instead of BAR2 exactly as expected", arguments: ["base-address-in-spec", "bar0-features-register"])
    func exampleReports(change: String) throws {
        let expectedPath = Repository.path("fixtures/spec-changes/\(change)/expected-report.txt")
        let actual = try report(change)
        if ProcessInfo.processInfo.environment["UPDATE_GOLDEN"] == "1" {
            try actual.write(toFile: expectedPath, atomically: true, encoding: .utf8)
        }
        let expected = try String(contentsOfFile: expectedPath, encoding: .utf8)
        #expect(actual == expected, "spec check report for \(change) changed:\n\(actual)")
    }

    @Test("an unchanged copy of the tables reports no change")
    func noChange() throws {
        let scripts = [try ScriptParser.parse(Repository.text("fixtures/spec-changes/scripts/checks.ivs"), path: "checks.ivs")]
        let r = try SpecCheck.run(modified: .builtIn, scripts: scripts, profiles: ["spec"])
        #expect(r.byteChanges.isEmpty && r.outcomeChanges.isEmpty && r.unbuildable.isEmpty)
    }
}

@Suite(.serialized) struct DriverCheckingScriptTests {
    @Test("REG-ACC-3, SHM-ST-1, SHM-OUT-2, REG-DB-4, REG-DB-5, MSIX-PBA-2, CFG-CMD-9, CFG-ACC-2: the buggy driver produces exactly its findings")
    func buggyDriver() throws {
        let results = ScriptRunner().run(try fixture("fixtures/scripts/buggy-driver.ivs"))
        #expect(results.count == 1 && results.allSatisfy { $0.passed }, "\(Reports.text(results))")
        let found = results.first?.trace.filter { $0.kind == .finding }.compactMap(\.requirement) ?? []
        #expect(found == ["REG-ACC-3", "REG-ACC-3", "SHM-ST-1", "SHM-OUT-2", "REG-DB-4", "REG-DB-5", "MSIX-PBA-2", "CFG-CMD-9", "CFG-ACC-2"])
        let summary = results.first?.findingSummary.map { "\($0.peer) \($0.requirement) \($0.count)" } ?? []
        #expect(summary.first == "A REG-ACC-3 2" && summary.count == 8)
        #expect(Reports.text(results).contains("findings: A REG-ACC-3 ×2, A SHM-ST-1"))
    }

    @Test("REG-ACC-3: --strict makes the first finding fatal, at the statement that caused it")
    func strict() throws {
        var runner = ScriptRunner()
        runner.strict = true
        let bad = runner.run(try fixture("fixtures/scripts/buggy-driver.ivs"))
        let f = try #require(bad.first?.failure)
        #expect(f.line == 8 && f.actual.contains("REG-ACC-3") && f.expected.contains("--strict"))
        let good = runner.run(try fixture("fixtures/scripts/two-peers.ivs"))
        #expect(good.allSatisfy { $0.passed }, "\(Reports.text(good))")
    }

    @Test("REG-ID-1, CFG-CMD-1: traced register accesses carry the requirement of the register they reach")
    func traceRequirements() throws {
        let script = try ScriptParser.parse("""
            join A
            A write16 cfg:0x04 0x0006
            A read32 reg:0x04 == 4
            """, path: "inline.ivs")
        let results = ScriptRunner().run(script)
        #expect(results.allSatisfy { $0.passed }, "\(Reports.text(results))")
        let trace = results.first?.trace ?? []
        #expect(trace.contains { $0.kind == .mmioRead && $0.requirement == "REG-MAXP-1" })
        #expect(trace.contains { ($0.kind == .configWrite || $0.kind == .configRead) && $0.requirement == "CFG-CMD-1" })
    }
}

/// `server protocol=v1` scripts (spec/ivshmem1.md).
@Suite(.serialized) struct V1ScriptTests {
    @Test("V1-REG-POS-1, V1-REG-DB-2, V1-REG-MASK-1: fixtures/scripts/v1-two-peers.ivs passes against the embedded v1 server; a v2-only statement fails with a message")
    func v1Script() throws {
        let results = ScriptRunner().run(try fixture("fixtures/scripts/v1-two-peers.ivs"))
        #expect(results.count == 2)
        for r in results { #expect(r.passed, "\(r.caseName): \(r.failure?.render(path: r.script) ?? "")") }
        let script = try ScriptParser.parse("server protocol=v1\ncase \"state\"\njoin A\nA state 5\n", path: "inline.ivs")
        let failed = ScriptRunner().run(script)
        #expect(failed.first?.failure?.actual.contains("v2 only") == true, "\(String(describing: failed.first?.failure))")
    }
}
