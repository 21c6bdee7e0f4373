import Foundation
@testable import IvshmemFuzz
import IvshmemHarness
import IvshmemSpec
import IvshmemWire
import Testing
import IvshmemTestSupport

let repositoryRoot = Repository.root.path

func bytes(_ path: String) throws -> [UInt8] {
    [UInt8](try #require(FileManager.default.contents(atPath: path), "cannot read \(path)"))
}

/// `make fuzz` runs the libFuzzer builds; these tests run the same target functions over every
/// seed and every saved crasher in the normal `make test`, so a fixed crash stays fixed.
@Suite struct FuzzCorpusTests {
    @Test("every seed and saved crasher under fixtures/fuzz, and the fixtures make fuzz seeds from, runs without a trap",
          arguments: FuzzTarget.allCases)
    func replay(_ target: FuzzTarget) throws {
        let paths = ([target.seedDirectory] + target.fixtureSeedDirectories).flatMap { FuzzReplay.files(under: repositoryRoot + "/" + $0) }
        let inputs = try paths.map(bytes) + target.generatedSeeds(repositoryRoot: repositoryRoot)
        #expect(inputs.count >= 5, "\(target) has \(inputs.count) seeds")
        for input in inputs { target.run(input) }
    }

    @Test("tools/fuzz.sh seeds each target from the same places as the replay test")
    func runnerAgrees() throws {
        let runner = String(decoding: try bytes(repositoryRoot + "/tools/fuzz.sh"), as: UTF8.self)
        for target in FuzzTarget.allCases {
            for directory in target.fixtureSeedDirectories { #expect(runner.contains("$root/\(directory)"), "\(target): \(directory)") }
        }
        #expect(runner.contains("$root/fixtures/fuzz/$target") && runner.contains("$root\"/spec/tables/*.json"))
        #expect(runner.contains("$root\"/fixtures/spec-changes/*/"))
    }

    @Test("the script seeds: the syntax tour parses into its two cases, the error seed stops at its first bad line")
    func scriptSeeds() throws {
        let tour = try ScriptParser.parse(String(decoding: try bytes(repositoryRoot + "/fixtures/fuzz/script/syntax-tour.ivs"), as: UTF8.self), path: "t")
        #expect(tour.cases.map(\.name) == ["a quoted case name", "two"])
        #expect(tour.cases[0].server.count == 1 && tour.cases[0].statements.count == 21)
        do {
            _ = try ScriptParser.parse(String(decoding: try bytes(repositoryRoot + "/fixtures/fuzz/script/errors.ivs"), as: UTF8.self), path: "e")
            Issue.record("errors.ivs parsed")
        } catch let error as ScriptError {
            #expect(error.line == 3)
        }
    }

    @Test("the tables input format: each generated seed loads; an unknown file name or text before the first marker is rejected")
    func tablesFormat() throws {
        let seeds = FuzzTarget.tables.generatedSeeds(repositoryRoot: repositoryRoot)
        #expect(seeds.count == SpecTables.fileNames.count + 2)
        for seed in seeds {
            let edited = try #require(TablesFuzz.sections(seed))
            var files = SpecTables.builtInFiles
            files.merge(edited) { _, new in new }
            _ = try SpecTables(files: files)
        }
        func sections(_ text: String) -> [String: String]? { TablesFuzz.sections(Array(text.utf8)) }
        #expect(sections("=== nosuch.json\n{}") == nil)
        #expect(sections("{}\n=== bar0.json\n{}") == nil)
        #expect(sections("=== bar0.json\n{\n}\n=== msix.json\n\n=== bar0.json\n[]\n") == ["bar0.json": "[]\n", "msix.json": ""])
        #expect(sections("=== bar0.json") == ["bar0.json": ""])
        #expect(FuzzTarget.tables.run(Array("=== nosuch.json\n{}".utf8)) == .rejected)
    }

    @Test("WIRE-GEN-2: the reference capture frames into the same messages whatever the read sizes")
    func chunking() throws {
        let stream = Array(try bytes(repositoryRoot + "/fixtures/fuzz/wire/capture-A-chunked").dropFirst())
        var expected: [WireMessage] = []
        for size in [1, 3, 7, 40] {
            var reader = MessageReader()
            var messages: [WireMessage] = []
            var offset = 0
            while offset < stream.count {
                let take = min(size, reader.bytesWanted, stream.count - offset)
                if let frame = try reader.consume(stream[offset..<(offset + take)]) {
                    messages.append(try frame.decode(initial: messages.isEmpty))
                }
                offset += take
            }
            #expect(!reader.isInsideMessage)
            if expected.isEmpty { expected = messages }
            #expect(messages == expected, "reads of \(size) bytes")
        }
        #expect(expected.count == 8 && expected.last == .eventFD(id: 1, vector: 1))
    }
}
