#if canImport(Glibc)
import Glibc
#endif
import IvshmemPosix

/// The peer processes of a simulation, followed together: every child's stdout and stderr
/// are read as they arrive, through one epoll set, so that no child blocks on a full pipe and
/// a child that fails is noticed whatever phase the coordinator is in. A child's stderr lines
/// are passed on one per line, prefixed with `peer N:`.
final class SimulationWorkers {
    /// One peer process. `number` is its place in start order, which is also the first ID the
    /// server gives it (peers attach one after another).
    final class Worker {
        let number: Int
        let role: String
        let process: LineProcess
        var outputOpen = true
        var errorsOpen = true
        /// The last line it wrote on stderr (its `error: …` line when it failed).
        var lastError: String?
        /// How it ended, once reaped.
        var status: ExitStatus?
        /// Why the simulation counts it as failed.
        var failure: String?
        init(number: Int, role: String, process: LineProcess) {
            self.number = number
            self.role = role
            self.process = process
        }
        var label: String { "peer \(number)" }
    }

    /// A phase could not complete; the failed or silent workers carry the reasons.
    struct Aborted: Error {}

    private(set) var workers: [Worker] = []
    private let epoll: Epoll
    private let executable: String
    private let environment: [String]

    init() throws {
        epoll = try Epoll(maxEventsPerWait: 64)
        executable = try SpawnedProcess.currentExecutablePath()
        var env: [String] = []
        var i = 0
        while let e = environ[i] { env.append(String(cString: e)); i += 1 }
        environment = env.filter { !$0.hasPrefix("IVSHMEM2_SIM_ROLE=") }
    }

    deinit {
        stopAll(grace: 0)
        epoll.close()
    }

    /// Starts this binary as `simulate-worker` with `arguments`, in `role` (`peer` or `churn`).
    func start(arguments: [String], role: String) throws -> Worker {
        let number = workers.count
        let process = try LineProcess(name: "peer \(number)", executable: executable, arguments: ["simulate-worker"] + arguments,
                                      environment: environment + ["IVSHMEM2_SIM_ROLE=\(role)"])
        let worker = Worker(number: number, role: role, process: process)
        workers.append(worker)
        do {
            try epoll.add(process.process.standardOutput!, events: .readable, token: UInt64(number * 2))
            try epoll.add(process.process.standardError!, events: .readable, token: UInt64(number * 2 + 1))
        } catch {
            worker.failure = "could not follow its output: \(error)"
            throw error
        }
        return worker
    }

    /// Sends `line` to every worker still reading; one that is gone is noticed by ``collect``.
    func send(_ line: String, to group: [Worker]) {
        for w in group where w.outputOpen { try? w.process.send(line) }
    }

    /// Waits until every worker of `group` has written a stdout line starting with `word`
    /// and returns those lines in the group's order. Throws ``Aborted`` after marking the
    /// culprits when a worker ends first, or when `stallTimeout` seconds pass without a line
    /// from any worker of the group (a bound on silence, not on the phase's length,
    /// which grows with the number of peers and the machine's load).
    func collect(_ word: String, from group: [Worker], stallTimeout: Double) throws -> [String] {
        var found: [Int: String] = [:]
        var lastProgress = Monotonic.now()
        while true {
            for w in group where found[w.number] == nil {
                while let line = w.process.nextLine() {
                    lastProgress = Monotonic.now()  // any line is progress (churners say `cycle N`)
                    if line.hasPrefix(word) { found[w.number] = line; break }
                }
                if found[w.number] == nil && !w.outputOpen {
                    reap(w)
                    let status = w.status.map { "\($0)" } ?? "ended"
                    w.failure = "\(status) before saying '\(word)'" + (w.lastError.map { ": \($0)" } ?? "")
                }
            }
            if group.contains(where: { $0.failure != nil }) { throw Aborted() }
            if found.count == group.count { return group.map { found[$0.number]! } }
            let silent = Monotonic.now() - lastProgress
            if silent >= stallTimeout {
                for w in group where found[w.number] == nil {
                    w.failure = "said nothing for \(Int(stallTimeout)) s while the coordinator waited for '\(word)'"
                }
                throw Aborted()
            }
            try pump(timeout: min(1, stallTimeout - silent))
        }
    }

    /// Reads what the workers wrote within `timeout` seconds: stdout lines are queued in
    /// their `LineProcess`, stderr lines are passed on at once with the worker's prefix.
    private func pump(timeout: Double) throws {
        try epoll.wait(timeoutMilliseconds: Int32(max(0, timeout) * 1000) + 1) { token, _ in
            let w = workers[Int(token / 2)]
            if token % 2 == 0 {
                if (try? w.process.readOutput()) != true {
                    w.outputOpen = false
                    try? epoll.remove(w.process.process.standardOutput!)
                }
            } else {
                readErrors(of: w)
                if !w.errorsOpen { try? epoll.remove(w.process.process.standardError!) }
            }
        }
    }

    /// Reaps a worker (killing it first when `kill`, or when it has not exited within 10 s of
    /// its stdout ending), passes on what is left on its stderr, and closes its pipes.
    private func reap(_ w: Worker, kill: Bool = false) {
        guard w.status == nil else { return }
        let child = w.process.process
        if kill { try? child.signal(SIGKILL) }
        w.status = (try? child.waitWithTimeout(seconds: 10)) ?? {
            try? child.signal(SIGKILL)
            return try? child.wait()
        }()
        // It has exited: everything it wrote is in the pipe, followed by end of file.
        while w.errorsOpen { readErrors(of: w) }
        try? epoll.remove(child.standardOutput!)
        try? epoll.remove(child.standardError!)
        w.outputOpen = false
        w.process.closePipes()
    }

    /// Reads once from the worker's stderr and passes each line on with its prefix.
    private func readErrors(of w: Worker) {
        guard let got = try? w.process.readErrorLines() else { w.errorsOpen = false; return }
        for line in got.lines where !line.isEmpty {
            writeStderrLine("\(w.label): \(line)")
            w.lastError = line
        }
        if got.ended { w.errorsOpen = false }
    }

    /// Ends every worker: closes their stdin (a worker waiting for its next command exits at
    /// once), reads their output while they finish, kills those still running after `grace`
    /// seconds, and reaps them all. A worker that exits unsuccessfully on its own is marked
    /// failed. Idempotent.
    func stopAll(grace: Double) {
        for w in workers where w.status == nil { w.process.closeInput() }
        let deadline = Monotonic.now() + grace
        while workers.contains(where: { $0.status == nil && $0.outputOpen }) && Monotonic.now() < deadline {
            (try? pump(timeout: min(1, deadline - Monotonic.now()))) ?? ()
        }
        for w in workers where w.status == nil {
            let killed = w.outputOpen
            reap(w, kill: killed)
            if !killed, w.failure == nil, let s = w.status, !s.isSuccess {
                w.failure = "\(s)" + (w.lastError.map { ": \($0)" } ?? "")
            }
        }
    }

    /// The workers that failed, in start order.
    var failed: [Worker] { workers.filter { $0.failure != nil } }
}
