import IvshmemModel
import IvshmemPosix
import IvshmemSpec

/// `spec check`: what a modified copy of the spec tables changes — config-space bytes per
/// profile and configuration, and which conformance cases change outcome.
public struct SpecCheckReport: Sendable {
    public struct ByteChange: Sendable, Equatable {
        public var variant: String
        public var offset: Int
        public var stock: UInt8
        public var modified: UInt8
        /// The register the byte belongs to in either table set.
        public var register: String
    }
    public struct OutcomeChange: Sendable, Equatable {
        public var script: String
        public var caseName: String
        public var profile: String
        public var stock: String
        public var modified: String
        public var detail: String?
    }
    /// Variants (profile/configuration) the modified tables cannot build, with the error.
    public var unbuildable: [(variant: String, error: String)]
    public var byteChanges: [ByteChange]
    public var outcomeChanges: [OutcomeChange]
    public var casesCompared: Int
    /// Case runs the change cannot affect, so not run (see ``SpecCheck/affects(_:changedProfiles:)``).
    public var casesUnaffected = 0
    /// Seconds the check took.
    public var seconds = 0.0

    /// Whether anything differs: a byte, an outcome, or a variant that no longer builds
    /// (`spec check` exits 1 then, as `git diff --exit-code` does).
    public var changed: Bool { !byteChanges.isEmpty || !outcomeChanges.isEmpty || !unbuildable.isEmpty }

    /// One line with the counts.
    public var summary: String {
        let variants = Set(byteChanges.map(\.variant)).count
        return "\(byteChanges.count) config-space byte(s) changed in \(variants) variant(s)"
            + (unbuildable.isEmpty ? "" : ", \(unbuildable.count) variant(s) no longer build")
            + "; \(outcomeChanges.count) of \(casesCompared) case run(s) changed outcome"
            + (casesUnaffected > 0 ? " (\(casesUnaffected) not affected by the change, not run)" : "")
    }

    public func render() -> String {
        var out = "== config space (modified vs stock)\n"
        if byteChanges.isEmpty && unbuildable.isEmpty { out += "no byte changed\n" }
        for (v, e) in unbuildable { out += "\(v): cannot build a device from the modified tables: \(e)\n" }
        for variant in Array(Set(byteChanges.map(\.variant))).sorted() {
            out += "\(variant):\n"
            // Group consecutive bytes of one register: "0x10-0x13 BAR0: 00 00 00 00 -> 0c 00 00 00".
            var group: [ByteChange] = []
            func flush() {
                guard let f = group.first, let l = group.last else { return }
                let range = f.offset == l.offset ? hex(f.offset) : "\(hex(f.offset))-\(hex(l.offset))"
                out += "  \(range) \(f.register): \(group.map { h2($0.stock) }.joined(separator: " ")) -> \(group.map { h2($0.modified) }.joined(separator: " "))\n"
                group.removeAll()
            }
            for c in byteChanges.filter({ $0.variant == variant }) {
                if let l = group.last, l.offset + 1 != c.offset || l.register != c.register { flush() }
                group.append(c)
            }
            flush()
        }
        out += "\n== conformance cases (\(casesCompared) case runs compared)\n"
        if outcomeChanges.isEmpty { out += "no case changed outcome\n" }
        for c in outcomeChanges {
            out += "\(c.script): \(c.caseName) [\(c.profile)]: \(c.stock) -> \(c.modified)" + (c.detail.map { "\n    \($0)" } ?? "") + "\n"
        }
        return out
    }

    func hex(_ v: Int) -> String { "0x" + (v < 16 ? "0" : "") + String(v, radix: 16) }
    func h2(_ v: UInt8) -> String { (v < 16 ? "0" : "") + String(v, radix: 16) }
}

public enum SpecCheck {
    /// The configurations compared byte for byte: every profile with MSI-X, plus INTx and an
    /// I/O register region where the profile allows them.
    public static func variants(_ tables: SpecTables) -> [(name: String, config: DeviceConfiguration)] {
        var out: [(String, DeviceConfiguration)] = []
        for p in tables.profiles.keys.sorted() {
            let base = DeviceConfiguration(profile: p, maxPeers: 4, vectors: 4, protocolType: 0x4001, rwSectionSize: 0x1000, outputSectionSize: 0x1000)
            out.append(("\(p) msix", base))
            var intx = base
            intx.interrupts = .intx(pin: 1)
            intx.vectors = 1
            out.append(("\(p) intx", intx))
            var io = base
            io.registerSpace = .io
            out.append(("\(p) io", io))
        }
        return out
    }

    static func configImage(_ config: DeviceConfiguration, tables: SpecTables) throws -> ([UInt8], ConfigSpace) {
        let fabric = try LocalFabric(template: config, tables: tables)
        let d = try fabric.addDevice()
        let image = (0..<ConfigSpace.size).map { UInt8(d.configRead(offset: $0, size: 1)) }
        return (image, try ConfigSpace(layout: d.layout, tables: tables))
    }

    /// The profiles a change of the tables can affect: nil when a table other than
    /// profiles.json differs (every profile), else the profiles whose entry differs.
    public static func changedProfiles(_ modified: SpecTables, _ stock: SpecTables) -> Set<String>? {
        var a = modified, b = stock
        a.profiles = [:]
        b.profiles = [:]
        guard a == b else { return nil }
        return Set(modified.profiles.keys).union(stock.profiles.keys).filter { modified.profiles[$0] != stock.profiles[$0] }
    }

    /// Whether the tables can change `run`'s outcome: only cases that build a device from them
    /// (a `join` under the run's profile) can, and with only profiles.json changed only when
    /// the run's profile, or a profile a `join` names, is one that changed. (Built-in checks
    /// build their devices from the built-in tables.)
    public static func affects(_ run: CaseRun, changedProfiles: Set<String>?) -> Bool {
        let joins = run.script.cases[run.caseIndex].statements.compactMap { st -> String? in
            guard st.applies(to: run.profile), case .join(_, let options) = st.command else { return nil }
            return options["profile"] ?? run.profile
        }
        guard !joins.isEmpty else { return false }
        guard let changed = changedProfiles else { return true }
        return joins.contains { changed.contains($0) }
    }

    /// Compares config space under both table sets, then runs the case runs of `scripts` the
    /// change can affect under both — `jobs` at a time, giving up a wait as soon as nothing
    /// more can come (``ScriptRunner/failFast``) — and lists the runs whose outcome differs.
    /// `progress(done, total)` follows the case runs.
    public static func run(modified: SpecTables, stock: SpecTables = .builtIn, scripts: [Script], profiles: [String],
                           jobs: Int = ScriptRunner.defaultJobs, progress: @escaping @Sendable (Int, Int) -> Void = { _, _ in }) throws -> SpecCheckReport {
        let start = Monotonic.now()
        var unbuildable: [(String, String)] = []
        var changes: [SpecCheckReport.ByteChange] = []
        let stockVariants = Dictionary(variants(stock).map { ($0.name, $0.config) }, uniquingKeysWith: { a, _ in a })
        for (name, config) in variants(modified) {
            guard let stockConfig = stockVariants[name], let (before, beforeSpace) = try? configImage(stockConfig, tables: stock) else {
                continue  // a profile or mode the stock spec does not have: nothing to compare
            }
            let after: [UInt8]
            let afterSpace: ConfigSpace
            do { (after, afterSpace) = try configImage(config, tables: modified) } catch {
                unbuildable.append((name, "\(error)"))
                continue
            }
            for i in 0..<ConfigSpace.size where before[i] != after[i] {
                let reg = afterSpace.block.field(at: i)?.name ?? beforeSpace.block.field(at: i)?.name ?? "(unassigned)"
                changes.append(.init(variant: name, offset: i, stock: before[i], modified: after[i], register: reg))
            }
        }

        var stockRunner = ScriptRunner()
        stockRunner.tables = stock
        stockRunner.failFast = true
        var modifiedRunner = stockRunner
        modifiedRunner.tables = modified
        let runners = [stockRunner, modifiedRunner]
        let changed = changedProfiles(modified, stock)
        let all = CaseRun.all(scripts, profiles: profiles)
        let runs = all.filter { affects($0, changedProfiles: changed) }
        // Item 2k is run k under the stock tables, 2k+1 under the modified ones.
        let results = ParallelWork.map(runs.count * 2, width: jobs, exclusive: { runs[$0 / 2].exclusive }, { i in
            let r = runs[i / 2]
            return runners[i % 2].run(r.script.cases[r.caseIndex], of: r.script, profile: r.profile)
        }, finished: { _, _, done in progress(done, runs.count * 2) })
        var outcomes: [SpecCheckReport.OutcomeChange] = []
        for (k, r) in runs.enumerated() {
            let x = results[2 * k], y = results[2 * k + 1]
            let sx = status(x), sy = status(y)
            if sx != sy {
                outcomes.append(.init(script: r.script.path, caseName: x.caseName, profile: r.profile, stock: sx, modified: sy,
                                      detail: y.failure.map { "line \($0.line): \($0.statement) — expected \($0.expected), got \($0.actual)" }))
            }
        }
        var report = SpecCheckReport(unbuildable: unbuildable, byteChanges: changes, outcomeChanges: outcomes, casesCompared: runs.count)
        report.casesUnaffected = all.count - runs.count
        report.seconds = Monotonic.now() - start
        return report
    }

    static func status(_ r: CaseResult) -> String { r.skipped ? "skip" : r.passed ? "pass" : "FAIL" }
}
