import Foundation
import IvshmemSpec

/// The fuzz targets of `make fuzz`, as plain functions of an input's bytes.
///
/// The libFuzzer executables (`fuzz-wire`, `fuzz-script`, `fuzz-tables`) call these from
/// `LLVMFuzzerTestOneInput`; built normally they replay files, and the test suite replays every
/// seed and every saved crasher under `fixtures/fuzz/` through the same functions.
///
/// Bad input must come back as an error value. A trap — a failed force unwrap, an arithmetic
/// overflow, an index out of range, or one of the consistency checks below — is a finding.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// Framing and decoding of server messages, bytes fed in arbitrary chunks.
    case wire
    /// The register-level script parser.
    case script
    /// The spec-table loader, and a device built from tables that load.
    case tables

    /// What became of one input: `rejected` asks libFuzzer not to keep it in the corpus.
    public enum Outcome: Equatable, Sendable { case accepted, rejected }

    /// Runs one input.
    @discardableResult
    public func run(_ input: [UInt8]) -> Outcome {
        switch self {
        case .wire: return WireFuzz.run(input)
        case .script: return ScriptFuzz.run(input)
        case .tables: return TablesFuzz.run(input)
        }
    }

    /// The target's own seeds, with the crashers it found under `regressions/`.
    public var seedDirectory: String { "fixtures/fuzz/" + rawValue }

    /// Repository fixtures (besides ``seedDirectory``) that `make fuzz` reads as seeds.
    public var fixtureSeedDirectories: [String] {
        switch self {
        case .wire, .tables: return []
        case .script: return ["fixtures/scripts", "fixtures/conformance", "fixtures/spec-changes/scripts"]
        }
    }

    /// Seeds made from repository files rather than kept as files: for `tables`, each file of
    /// `spec/tables` alone, and each example of `fixtures/spec-changes` with all its files, in
    /// the input format (`=== name` lines). `tools/fuzz.sh` writes the same ones.
    public func generatedSeeds(repositoryRoot root: String) -> [[UInt8]] {
        guard self == .tables else { return [] }
        func section(_ path: String) -> String? {
            FileManager.default.contents(atPath: path).map { "=== " + (path as NSString).lastPathComponent + "\n" + String(decoding: $0, as: UTF8.self) }
        }
        var seeds = SpecTables.fileNames.compactMap { section(root + "/spec/tables/" + $0) }
        let changes = root + "/fixtures/spec-changes"
        for example in ((try? FileManager.default.contentsOfDirectory(atPath: changes)) ?? []).sorted() {
            let files = SpecTables.fileNames.compactMap { section(changes + "/" + example + "/" + $0) }
            if !files.isEmpty { seeds.append(files.joined(separator: "\n")) }
        }
        return seeds.map { Array($0.utf8) }
    }

    /// The value `LLVMFuzzerTestOneInput` returns: 0 keeps the input, -1 keeps it out of the corpus.
    public func libFuzzerEntry(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
        let input = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
        return run(input) == .accepted ? 0 : -1
    }
}

/// A broken invariant of the code under test: traps, so that libFuzzer records the input.
func invariant(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
               file: StaticString = #fileID, line: UInt = #line) {
    if !condition() { fatalError("fuzz invariant broken: \(message())", file: file, line: line) }
}
