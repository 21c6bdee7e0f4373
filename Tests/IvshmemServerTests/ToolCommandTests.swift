import Foundation
import IvshmemPosix
import IvshmemTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The `ivshmem2` command line as its users meet it (issue 14): exit statuses, usage only for
/// usage errors, `run DIR`, `--version`, the spec-check and conformance summaries, traces, the
/// detached server's output, dump-config after firmware.
extension IvshmemServerTestSuite {
@Suite("Tool command line")
struct ToolCommandTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    func write(_ scratch: ScratchDirectory, _ name: String, _ text: String) throws -> String {
        let path = scratch.file(name)
        try FileSystem.writeFile(path, bytes: Array(text.utf8))
        return path
    }

    @Test("a runtime failure exits 1 with one message and no usage; a usage error exits 64 with the usage")
    func exitStatuses() throws {
        let peer = try ServerProcess.run(["peer", "-S", "/nonexistent/sock"])
        #expect(peer.status == .exited(1), "\(peer.standardError)")
        #expect(peer.standardError.contains("/nonexistent/sock") && !peer.standardError.contains("Usage:"), "\(peer.standardError)")
        for args in [["qemu", "-S", "/nonexistent/sock", "--", "qemu-system-x86_64"], ["virtio", "console", "--frontend", "-S", "/nonexistent/sock"]] {
            let r = try ServerProcess.run(args)
            #expect(r.status == .exited(1) && r.standardError.contains("/nonexistent/sock") && !r.standardError.contains("Usage:"), "\(args[0]): \(r.standardError)")
        }
        let dump = try ServerProcess.run(["dump-config", "--profile", "bogus"])
        #expect(dump.status == .exited(1))
        #expect(dump.standardError.contains("unknown profile 'bogus'") && !dump.standardError.contains("Usage:"), "\(dump.standardError)")
        let usage = try ServerProcess.run(["run", "--no-such-option", "x.ivs"])
        #expect(usage.status == .exited(64))
        #expect(usage.standardError.contains("Usage: ivshmem2 run"), "\(usage.standardError)")
        for args in [["run", "-j", "0", "x.ivs"], ["conformance", "--jobs", "0"], ["spec", "check", "--spec", ".", "--jobs=-2"]] {
            let jobs = try ServerProcess.run(args)
            #expect(jobs.status == .exited(64) && jobs.standardError.contains("--jobs must be at least 1"), "\(args): \(jobs.standardError)")
        }
        let level = try ServerProcess.run(["dump-config", "--log-level", "loud"])
        #expect(level.status == .exited(64) && level.standardError.contains("--log-level"), "\(level.standardError)")
        let version = try ServerProcess.run(["--version"])
        #expect(version.status == .exited(0) && version.standardOutput.split(separator: ".").count == 3, "\(version.standardOutput)")
    }

    @Test("every command takes --log-level and -q (the commands are read from the tool's own --help, nested groups included)")
    func loggingOptions() throws {
        /// The subcommand names listed under SUBCOMMANDS in `--help` of `path`.
        func subcommands(_ path: [String]) throws -> [String] {
            let help = try ServerProcess.run(path + ["--help"]).standardOutput
            guard let start = help.range(of: "SUBCOMMANDS:\n") else { return [] }
            // The block ends at the first empty line (the "See 'ivshmem2 help …'" hint follows it).
            let block = help[start.upperBound...].split(separator: "\n", omittingEmptySubsequences: false).prefix { !$0.isEmpty }
            return block.compactMap { line in
                guard line.hasPrefix("  "), !line.hasPrefix("   "), let name = line.split(separator: " ").first,
                      name.allSatisfy({ $0.isLowercase || $0.isNumber || $0 == "-" }) else { return nil }
                return String(name)
            }
        }
        var leaves: [[String]] = []
        var pending = try subcommands([]).map { [$0] }
        while let path = pending.popLast() {
            try #require(path.count <= 3 && leaves.count < 100, "the command tree is not what --help lists: \(path)")
            let children = try subcommands(path)
            if children.isEmpty { leaves.append(path) } else { pending += children.map { path + [$0] } }
        }
        #expect(leaves.count >= 12, "\(leaves)")
        for path in leaves {
            let help = try ServerProcess.run(path + ["--help"]).standardOutput
            #expect(help.contains("--log-level") && help.contains("-q, --quiet"), "\(path.joined(separator: " ")): \(help)")
        }
        let spec = try ServerProcess.run(["spec", "check", "--help"])
        #expect(spec.standardOutput.contains("--exit-zero"))
    }

    @Test("run: a directory runs every script in it; a parse error exits 65, all cases skipped exits 5, a failing case 1")
    func runStatuses() throws {
        let scratch = try ScratchDirectory()
        let dir = scratch.file("scripts")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        _ = try write(scratch, "scripts/a.ivs", "case one\njoin A\nA read32 reg:0x04 == 4\n")
        _ = try write(scratch, "scripts/b.ivs", "case two\njoin B\nB read32 reg:0x00 == 0\n")
        let ok = try ServerProcess.run(["run", dir])
        #expect(ok.status == .exited(0), "\(ok.standardOutput)\(ok.standardError)")
        #expect(ok.standardOutput.contains("a.ivs: one") && ok.standardOutput.contains("b.ivs: two") && ok.standardOutput.contains("2 passed"))
        #expect(!ok.standardError.contains("\r"), "no progress line into a pipe: \(ok.standardError)")

        let bad = try write(scratch, "bad.ivs", "join A\nA ring C 1\n")
        let parse = try ServerProcess.run(["run", bad])
        #expect(parse.status == .exited(65))
        #expect(parse.standardError.contains("bad.ivs:2:") && parse.standardError.contains("'C' has not joined"), "\(parse.standardError)")

        let skipped = try write(scratch, "skipped.ivs", "case only-qemu\nprofiles qemu-rfc\njoin A\n")
        let none = try ServerProcess.run(["run", skipped])
        #expect(none.status == .exited(5), "\(none.standardOutput)\(none.standardError)")
        #expect(none.standardError.contains("no case ran"))

        let failing = try ServerProcess.run(["run", ToolCommandTests.root + "/fixtures/scripts/negative-wrong-expectation.ivs"])
        #expect(failing.status == .exited(1))
    }

    @Test("a progress line on a terminal (run under script(1), which gives it a pseudo-terminal), none into a pipe",
          .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/script")))
    func progressOnTerminal() throws {
        let tool = try BuiltProducts.ivshmem2()
        let script = ToolCommandTests.root + "/fixtures/scripts/two-peers.ivs"
        let r = try ServerProcess.run(executable: "/usr/bin/script", ["-qec", "\(tool) run \(script)", "/dev/null"])
        #expect(r.status == .exited(0), "\(r.standardOutput)")
        #expect(r.standardOutput.contains("\r\u{1B}[K[1/1]"), "\(r.standardOutput.debugDescription)")
        let piped = try ServerProcess.run(["run", script])
        #expect(!piped.standardError.contains("[1/1]") && !piped.standardOutput.contains("[1/1]"))
    }

    @Test("run --trace: every record names its file, case and profile, on one clock for the whole run")
    func traceFields() throws {
        let scratch = try ScratchDirectory()
        let script = try write(scratch, "t.ivs", "case first\njoin A\nA state 1\ncase second\njoin B\nB state 2\n")
        let trace = scratch.file("trace.jsonl")
        let r = try ServerProcess.run(["run", "--jobs", "1", "--trace", trace, script])
        #expect(r.status == .exited(0), "\(r.standardOutput)")
        let records = try String(contentsOfFile: trace, encoding: .utf8).split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        #expect(records.allSatisfy { $0["file"] as? String == script && $0["profile"] as? String == "spec" && $0["case"] != nil })
        let first = records.filter { $0["case"] as? String == "first" }.compactMap { $0["time"] as? Double }
        let second = records.filter { $0["case"] as? String == "second" }.compactMap { $0["time"] as? Double }
        #expect(!first.isEmpty && !second.isEmpty)
        #expect(second.min()! >= first.max()!, "the second case's clock continues the first's: \(first) then \(second)")
    }

    @Test("spec check: exit 1 when something changed (0 with --exit-zero), a summary line; unknown files and JSON errors named")
    func specCheckStatuses() throws {
        let change = ToolCommandTests.root + "/fixtures/spec-changes/bar0-features-register"
        let scripts = ToolCommandTests.root + "/fixtures/spec-changes/scripts"
        let changed = try ServerProcess.run(["spec", "check", "--spec", change, "--dir", scripts], timeout: 120)
        #expect(changed.status == .exited(1), "\(changed.standardOutput)\(changed.standardError)")
        #expect(changed.standardOutput.contains("3 of 9 case run(s) changed outcome"), "\(changed.standardOutput)")
        let zero = try ServerProcess.run(["spec", "check", "--exit-zero", "--spec", change, "--dir", scripts], timeout: 120)
        #expect(zero.status == .exited(0))

        let scratch = try ScratchDirectory()
        let misnamed = scratch.file("misnamed")
        try FileManager.default.createDirectory(atPath: misnamed, withIntermediateDirectories: true)
        _ = try write(scratch, "misnamed/config_header.json", "{}")
        let unknown = try ServerProcess.run(["spec", "check", "--spec", misnamed, "--dir", scripts])
        #expect(unknown.status == .exited(1) && unknown.standardError.contains("config_header.json is not a spec table"), "\(unknown.standardError)")
        let broken = scratch.file("broken")
        try FileManager.default.createDirectory(atPath: broken, withIntermediateDirectories: true)
        _ = try write(scratch, "broken/bar0.json", "{\n  \"size\": \"0x100\",\n  \"registers\": [1,, 2]\n}\n")
        let json = try ServerProcess.run(["spec", "check", "--spec", broken, "--dir", scripts])
        #expect(json.status == .exited(1))
        #expect(json.standardError.contains("broken/bar0.json") && json.standardError.contains("line 3, column 19"), "\(json.standardError)")
    }

    @Test("conformance: skipped case runs are listed with their reason, and JUnit carries it")
    func conformanceSkipReasons() throws {
        let scratch = try ScratchDirectory()
        let dir = scratch.file("suite")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        _ = try write(scratch, "suite/a.ivs", "case \"qemu only\"\ncovers REG-MAXP-1\nprofiles qemu-rfc\njoin A\nA read32 reg:0x04 == 4\n")
        let spec = try write(scratch, "spec.md", "- **REG-MAXP-1** Maximum Peers.\n")
        let junit = scratch.file("junit.xml")
        let r = try ServerProcess.run(["conformance", "--dir", dir, "--spec", spec, "--junit", junit, "--verbose"])
        #expect(r.status == .exited(0), "\(r.standardOutput)\(r.standardError)")
        #expect(r.standardOutput.contains("skipped case runs:") && r.standardOutput.contains("[spec]: runs only under qemu-rfc (profiles line 3), not spec"), "\(r.standardOutput)")
        #expect(r.standardError.contains("SKIP") && r.standardError.contains("runs only under qemu-rfc"), "--verbose: \(r.standardError)")
        let xml = try String(contentsOfFile: junit, encoding: .utf8)
        #expect(xml.contains("<skipped message=\"runs only under qemu-rfc (profiles line 3), not jailhouse\"/>"), "\(xml)")
    }

    @Test("a detached server lets go of the terminal: its log goes to --log-file, nothing to the starting stderr")
    func detachedServerIsQuiet() throws {
        let scratch = try ScratchDirectory()
        let sock = scratch.file("sock")
        let pidFile = scratch.file("pid")
        let log = scratch.file("server.log")
        // The output pipes reach end of file only when no process holds them any more.
        let r = try ServerProcess.run(["server", "-S", sock, "-p", pidFile, "-v", "--log-file", log], timeout: 20)
        #expect(r.status == .exited(0) && r.standardError.isEmpty && r.standardOutput.isEmpty, "\(r.standardError)")
        let pid = try #require(Int32(String(decoding: try FileSystem.readFile(pidFile), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)))
        defer { kill(pid, SIGTERM) }
        let client = try RawClient(name: "P0", path: sock)
        try client.receive(2)
        client.close()
        #expect(Monotonic.poll(timeout: 10) { (try? String(contentsOfFile: log, encoding: .utf8))?.contains("listening") == true })
        kill(pid, SIGTERM)
        #expect(Monotonic.poll(timeout: 10) { !SpawnedProcess.exists(pid) })
    }

    @Test("demo: each command's ok: line comes right after it, before the events it caused; no prompt into a pipe")
    func demoOrder() throws {
        let r = try ServerProcess.run(["demo"], timeout: 60)
        #expect(r.status == .exited(0), "\(r.standardOutput)\(r.standardError)")
        let lines = r.standardOutput.split(separator: "\n").map(String.init)
        var checked = 0
        for (i, line) in lines.enumerated() {
            guard let peer = line.split(separator: " ").first, line.contains("] > state") || line.contains("] > int") || line.contains("] > shm-write") else { continue }
            #expect(i + 1 < lines.count && lines[i + 1].hasPrefix("\(peer) ok:"), "after '\(line)': '\(i + 1 < lines.count ? lines[i + 1] : "")'")
            checked += 1
        }
        #expect(checked == 5, "\(r.standardOutput)")
        #expect(!r.standardOutput.contains("ivshmem2["), "a prompt reached a pipe")
    }

    @Test("CFG-BAR-1: dump-config --after-firmware shows the BARs a guest's firmware assigned, with decoding on")
    func dumpAfterFirmware() throws {
        let reset = try ServerProcess.run(["dump-config"])
        #expect(reset.standardOutput.contains("\n10: 00 00 00 00"), "\(reset.standardOutput)")
        let r = try ServerProcess.run(["dump-config", "--after-firmware"])
        #expect(r.status == .exited(0))
        // Command = 0006h (memory decode, bus master); BAR0 = c0000000h.
        #expect(r.standardOutput.contains("\n00: 0a 11 06 41 06 00"), "\(r.standardOutput)")
        #expect(r.standardOutput.contains("\n10: 00 00 00 c0"), "\(r.standardOutput)")
        #expect(r.standardOutput.contains("after firmware: BAR0=0xc0000000"))
    }
}
}
