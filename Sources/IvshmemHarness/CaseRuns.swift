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
    public static let defaultJobs = 16

    /// Runs `runs`, up to `jobs` at a time, each on its own embedded server (against an external
    /// server they run one at a time: they would share it); ``CaseRun/exclusive`` runs come
    /// after the others, one at a time. Results come back in the order of
    /// `runs`; `finished` sees each result as it completes, with the number done so far (calls
    /// never overlap).
    public func run(_ runs: [CaseRun], jobs: Int = ScriptRunner.defaultJobs,
                    finished: @escaping @Sendable (CaseResult, Int) -> Void = { _, _ in }) -> [CaseResult] {
        let runner = self
        return ParallelWork.map(runs.count, width: externalSocket == nil ? jobs : 1, exclusive: { runs[$0].exclusive }, { i in
            runner.run(runs[i].script.cases[runs[i].caseIndex], of: runs[i].script, profile: runs[i].profile)
        }, finished: { _, r, done in finished(r, done) })
    }
}
