import Foundation
import IvshmemHarness
import IvshmemPosix
import IvshmemSpec
import IvshmemSync
import Testing

/// What the runners and reports promise their users (issue 14): skip reasons everywhere,
/// results in script order whatever the parallelism, names checked at parse time, failed waits
/// that say what became of the events, spec checks that run only what a change can affect.
@Suite(.serialized) struct ToolBehaviourTests {
    func parse(_ text: String, _ path: String = "t.ivs") throws -> Script { try ScriptParser.parse(text, path: path) }

    @Test("every skip has a reason: text with --verbose, JSON skip_reason, JUnit <skipped message>")
    func skipReasons() throws {
        let s = try parse("case \"qemu only\"\nprofiles qemu-rfc\njoin A\n")
        let results = ScriptRunner().run(s, profile: "spec")
        let r = try #require(results.first)
        #expect(r.skipped && r.skipReason == "runs only under qemu-rfc (profiles line 2), not spec")
        #expect(Reports.text(results, verbose: true).contains("SKIP t.ivs: qemu only [spec]: runs only under qemu-rfc"))
        #expect(Reports.text(results).contains("1 skipped (--verbose lists them with the reason)"))
        let json = try #require(try JSONSerialization.jsonObject(with: Data(Reports.json(results).utf8)) as? [[String: Any]])
        #expect(json.first?["skip_reason"] as? String == r.skipReason)
        #expect(Reports.junit(results).contains("<skipped message=\"runs only under qemu-rfc (profiles line 2), not spec\"/>"))
    }

    @Test("REG-ST-1: cases run concurrently come back in script order, each on its own server")
    func parallelOrder() throws {
        var text = ""
        for i in 0..<12 { text += "case c\(i)\njoin A\njoin B\nA state \(i + 1)\nB wait irq vector=0\nB read32 shm:0x0 == \(i + 1)\n" }
        let s = try parse(text)
        let runs = CaseRun.all([s], profiles: ["spec"])
        let done = Locked(0)
        let results = ScriptRunner().run(runs, jobs: 6) { _, n in done.withLock { $0 = max($0, n) } }
        #expect(results.map(\.caseName) == (0..<12).map { "c\($0)" })
        #expect(results.allSatisfy { $0.passed }, "\(Reports.text(results))")
        #expect(done.withLock { $0 } == 12)
    }

    @Test("a statement may name only peers joined earlier in its case: the parse fails with line and column")
    func peerNamesAtParseTime() throws {
        do {
            _ = try parse("case one\njoin A\njoin B\nA ring C 1\n")
            Issue.record("an unknown doorbell target parsed")
        } catch let e as ScriptError {
            #expect(e.line == 4 && e.column == 8 && e.message.contains("'C' has not joined") && e.message.contains("A, B"), "\(e)")
        }
        do {
            _ = try parse("case one\njoin A\ncase two\nA state 1\n")
            Issue.record("a peer of another case parsed")
        } catch let e as ScriptError {
            #expect(e.line == 4 && e.column == 1 && e.message.contains("'A' has not joined in this case"), "\(e)")
        }
        // Numeric targets, raw clients and profile-conditioned joins are fine.
        _ = try parse("join A\nA ring 3 1\nclient X\nX expect-msg INIT\n[qemu-rfc] join B\nA ring B 0\n")
    }

    @Test("MSIX-PBA-1, MSIX-PBA-3: a wait for a masked vector says dropped (spec) or pending (qemu-rfc), in the failure and the trace")
    func maskedVectorDiagnosis() throws {
        let s = try parse("""
            case masked
            join A
            join B
            B write32 msix:0x1c 1
            A ring B 1
            B wait irq vector=1 timeout=2
            """)
        var runner = ScriptRunner()
        runner.failFast = true
        let spec = try #require(runner.run(s, profile: "spec").first?.failure)
        #expect(spec.actual.contains("received on vector 1 while masked") && spec.actual.contains("dropped (MSIX-PBA-1)"), "\(spec.actual)")
        #expect(spec.actual.contains("nothing more could come"), "\(spec.actual)")
        #expect(spec.traceTail.contains { $0.kind == .interrupt && $0.requirement == "MSIX-PBA-1" })
        let qemu = try #require(runner.run(s, profile: "qemu-rfc").first?.failure)
        #expect(qemu.actual.contains("pending in the PBA") && qemu.actual.contains("MSIX-PBA-3"), "\(qemu.actual)")
    }

    @Test("REG-DB-3: a doorbell that never arrives fails as soon as nothing more can come, naming why")
    func failFast() throws {
        let s = try parse("case lost\njoin A\njoin B\nA write32 reg:0x08 1\nB wait irq vector=1 timeout=30\n")
        var runner = ScriptRunner()
        runner.failFast = true
        let f = try #require(runner.run(s, profile: "spec").first?.failure)
        #expect(f.actual.contains("nothing more could come") && f.actual.contains("no event reached this device"), "\(f.actual)")
    }

    @Test("spec check runs only the case runs a change can affect")
    func affectedRuns() throws {
        let s = try parse("case device\njoin A\nA read32 reg:0x04 == 2\ncase wire\nclient X\nX expect-msg INIT\ncase jh\njoin A profile=jailhouse\n")
        let runs = CaseRun.all([s], profiles: ["spec", "qemu-rfc"])
        let everything = runs.filter { SpecCheck.affects($0, changedProfiles: nil) }.map { "\($0.caseIndex) \($0.profile)" }
        #expect(everything == ["0 spec", "2 spec", "0 qemu-rfc", "2 qemu-rfc"])
        let jailhouseOnly = runs.filter { SpecCheck.affects($0, changedProfiles: ["jailhouse"]) }.map { "\($0.caseIndex) \($0.profile)" }
        #expect(jailhouseOnly == ["2 spec", "2 qemu-rfc"])
        var modified = SpecTables.builtIn
        modified.profiles["jailhouse"]?.maxVectors = 8
        #expect(SpecCheck.changedProfiles(modified, .builtIn) == ["jailhouse"])
        modified.header[0].name = "Vendor"
        #expect(SpecCheck.changedProfiles(modified, .builtIn) == nil)
    }

    @Test("a spec table with a JSON syntax error is named with line and column; an unknown file in the directory is refused")
    func tableErrors() throws {
        #expect(JSONSyntax.firstProblem(in: "{\"a\": [1, 2]}") == nil)
        #expect(JSONSyntax.firstProblem(in: "{\n \"a\": 1\n \"b\": 2}")?.description == "line 3, column 2: expected ',' or '}', found '\"'")
        #expect(JSONSyntax.firstProblem(in: "[1, 2")?.message == "expected ',' or ']', found the end of the file")
        let dir = try FileSystem.makeTemporaryDirectory(template: "/tmp/ivshmem2-spec.XXXXXX")
        defer { FileSystem.removeDirectoryTree(dir) }
        try FileSystem.writeFile(dir + "/config_header.json", bytes: Array("{}".utf8))
        #expect(throws: SpecError.unexpectedFile(dir + "/config_header.json", known: SpecTables.fileNames)) { try SpecTables(overlaying: dir) }
        try FileSystem.unlink(dir + "/config_header.json")
        try FileSystem.writeFile(dir + "/notes.md", bytes: Array("why".utf8))
        try FileSystem.writeFile(dir + "/msix.json", bytes: Array("{\n  \"capabilityID\": \"0x11\"\n  }x".utf8))
        do {
            _ = try SpecTables(overlaying: dir)
            Issue.record("a broken table loaded")
        } catch {
            #expect("\(error)".contains(dir + "/msix.json") && "\(error)".contains("line 3, column 4"), "\(error)")
        }
    }

    @Test("IRQ-EN-1: a change that stops interrupts changes outcomes, and its waits give up early, saying why")
    func brokenInterruptControl() throws {
        var modified = SpecTables.builtIn
        let ic = try #require(modified.bar0.firstIndex { $0.name == "Interrupt Control" })
        modified.bar0[ic].writable = .literal(0)  // the driver can no longer enable interrupts
        let s = try parse("case ring\njoin A\njoin B\nA ring B 1\nB wait irq vector=1 timeout=30\n", "ring.ivs")
        let report = try SpecCheck.run(modified: modified, scripts: [s], profiles: ["spec"], jobs: 2)
        #expect(report.changed && report.outcomeChanges.count == 1, "\(report.render())")
        let detail = report.outcomeChanges.first?.detail ?? ""
        #expect(detail.contains("nothing more could come") && detail.contains("IRQ-EN-1"), "\(report.render())")
    }

    @Test("REG-DB-1, REG-ST-1: scripts ring and set State at the offsets the tables give, so an inserted register changes no outcome")
    func insertedRegister() throws {
        var modified = SpecTables.builtIn
        let base = try #require(modified.bar0.firstIndex { $0.name == "Interrupt Control" })
        for i in modified.bar0.indices where i >= base { modified.bar0[i].offset += 4 }
        let s = try parse("case ring\njoin A\njoin B\nA ring B 1\nB wait irq vector=1\nA state 5\nB read32 shm:0x0 == 5\n", "ring.ivs")
        let report = try SpecCheck.run(modified: modified, scripts: [s], profiles: ["spec"], jobs: 2)
        #expect(report.outcomeChanges.isEmpty && report.casesCompared == 1, "\(report.render())")
    }
}
