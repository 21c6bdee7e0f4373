import IvshmemSync

/// One case of one script under one profile: what the runners schedule.
public struct CaseRun: Sendable {
    public var script: Script
    public var caseIndex: Int
    public var profile: String

    public init(script: Script, caseIndex: Int, profile: String) {
        self.script = script
        self.caseIndex = caseIndex
        self.profile = profile
    }

    /// The case runs a built-in check that counts this process's descriptors: nothing else may
    /// open or close descriptors meanwhile, so it runs alone.
    public var exclusive: Bool {
        script.cases[caseIndex].statements.contains { st in
            guard st.applies(to: profile), case .check(let name) = st.command else { return false }
            return BuiltinChecks.all[name]?.countsProcessDescriptors == true
        }
    }

    /// Every case of every script under every profile, script by script.
    public static func all(_ scripts: [Script], profiles: [String]) -> [CaseRun] {
        scripts.flatMap { s in profiles.flatMap { p in s.cases.indices.map { CaseRun(script: s, caseIndex: $0, profile: p) } } }
    }
}

extension ScriptRunner {
    /// How many cases run at once by default. A case mostly waits (on its server, its peers'
    /// event loops, a timeout), so several per CPU keep the machine busy.
    public static let defaultJobs = 8

    /// Runs `runs`, up to `jobs` at a time, each on its own embedded server (against an external
    /// server they run one at a time: they would share it); ``CaseRun/exclusive`` runs come
    /// after the others, one at a time. Results come back in the order of
    /// `runs`; `finished` sees each result as it completes, with the number done so far (calls
    /// never overlap).
    public func run(_ runs: [CaseRun], jobs: Int = ScriptRunner.defaultJobs,
                    finished: @escaping @Sendable (CaseResult, Int) -> Void = { _, _ in }) -> [CaseResult] {
        struct Progress {
            var next = 0
            var done = 0
            var results: [CaseResult?]
        }
        let progress = Locked(Progress(results: Array(repeating: nil, count: runs.count)))
        let runner = self
        // Shared runs first, then the exclusive ones: `order` holds indices into `runs`.
        let exclusive = runs.map(\.exclusive)
        let order = runs.indices.filter { !exclusive[$0] } + runs.indices.filter { exclusive[$0] }
        let shared = exclusive.filter { !$0 }.count
        let work: @Sendable (Int) -> Void = { end in
            while true {
                let i: Int? = progress.withLock { p in
                    guard p.next < end else { return nil }
                    defer { p.next += 1 }
                    return order[p.next]
                }
                guard let i else { return }
                let run = runs[i]
                let r = runner.run(run.script.cases[run.caseIndex], of: run.script, profile: run.profile)
                progress.withLock { p in
                    p.results[i] = r
                    p.done += 1
                    finished(r, p.done)
                }
            }
        }
        let width = externalSocket == nil ? max(1, min(jobs, shared)) : 1
        if width == 1 {
            work(shared)
        } else {
            let threads = (0..<width).map { _ in CheckThread { work(shared) } }
            for t in threads { t.join() }
        }
        work(runs.count)
        return progress.withLock { p in p.results.map { $0! } }
    }
}
