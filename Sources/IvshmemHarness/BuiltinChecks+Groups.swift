extension BuiltinChecks {
    /// The groups of built-in checks. Add a group's static array here.
    static var groups: [[BuiltinCheck]] { [harnessChecks, deviceChecks, wireChecks, serverChecks, virtioChecks] }

    /// Checks of the harness itself.
    static let harnessChecks: [BuiltinCheck] = [
        BuiltinCheck(name: "harness-server-reachable", summary: "the case's server accepts a connection and sends INIT") { ctx in
            let c = try RawWireClient(name: "check", socketPath: ctx.socketPath, trace: ctx.trace)
            defer { c.close() }
            guard let r = try c.next(timeout: 5), case .initial = r.message else {
                throw CheckFailure(expected: "INIT from the server", actual: c.closedByServer ? "connection closed" : "nothing")
            }
        },
    ]
}
