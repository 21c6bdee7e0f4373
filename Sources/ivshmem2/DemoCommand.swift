#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import IvshmemPosix

/// `ivshmem2 demo` (the README's run command): our server and two emulated peers as separate
/// processes find each other, exchange state changes and doorbells both ways, and one leaves.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run a server and two peer processes through a short conversation and print the transcript.")

    @Option(help: "Seconds to wait for each expected event.") var timeout: Double = 10
    @OptionGroup var logging: LoggingOptions

    func run() throws {
        try Signals.ignoreBrokenPipe()
        logging.apply()
        let dir = try FileSystem.makeTemporaryDirectory(template: "/tmp/ivshmem2-demo.XXXXXX")
        defer { FileSystem.removeDirectoryTree(dir) }
        let sock = dir + "/ivshmem.sock"
        let say: (String, String) -> Void = { who, line in writeStdout("[\(who)] \(line)\n") }
        writeStdout("== ivshmem2 demo: server + 2 peers, 2 vectors, 1 MiB shared memory\n")

        let server = try spawnSelf(name: "server", arguments: ["server", "-F", "-S", sock, "-l", "1M", "-n", "2", "-V", "2", "-o", "64K", "-P", "0x4001"], echo: say)
        var children = [server]
        defer { for c in children.reversed() { _ = try? c.finish(timeout: 5) } }
        try waitForSocket(sock, server: server)

        section(children, "A joins\n")
        let a = try spawnSelf(name: "A", arguments: ["peer", "--quiet", "-S", sock], echo: say)
        children.append(a)
        try a.expect("ready: id 0", timeout: timeout)

        section(children, "B joins; A sees it\n")
        let b = try spawnSelf(name: "B", arguments: ["peer", "--quiet", "-S", sock], echo: say)
        children.append(b)
        try b.expect("ready: id 1", timeout: timeout)
        try b.expect("joined: peer 0", timeout: timeout)
        try a.expect("joined: peer 1", timeout: timeout)

        section(children, "A sets its state to 1: B gets vector 0 and reads the state table\n")
        try a.say("state 1", echo: say)
        try a.expect("ok: state", timeout: timeout)
        try b.expect("irq: vector 0", timeout: timeout)
        try b.say("dump", echo: say)
        try b.expect("state-table: peer 0 0x1 active", timeout: timeout)

        section(children, "B sets its state to 2: A gets vector 0\n")
        try b.say("state 2", echo: say)
        try b.expect("ok: state", timeout: timeout)  // each command's ok: before what it caused
        try a.expect("irq: vector 0", timeout: timeout)

        section(children, "doorbells both ways on vector 1; shared memory\n")
        try a.say("shm-write 0x1000 hello from A", echo: say)
        try a.expect("ok: wrote", timeout: timeout)
        try a.say("int 1 1", echo: say)
        try a.expect("ok: rang", timeout: timeout)
        try b.expect("irq: vector 1", timeout: timeout)
        try b.say("shm-read 0x1000 12", echo: say)
        try b.expect("shm: 0x1000 \"hello from A\"", timeout: timeout)
        try b.say("int 0 1", echo: say)
        try b.expect("ok: rang", timeout: timeout)
        try a.expect("irq: vector 1", timeout: timeout)

        section(children, "B leaves: A sees PEER_GONE, vector 0, and B's state entry zeroed\n")
        try b.say("quit", echo: say)
        let bStatus = try b.finish(timeout: timeout)
        guard bStatus.isSuccess else { throw ToolFailure("peer B exited with \(bStatus)") }
        try a.expect("left: peer 1", timeout: timeout)
        try a.expect("irq: vector 0", timeout: timeout)
        try a.say("dump", echo: say)
        try a.expect("peers: 0", timeout: timeout)
        try a.expect("state-table: peer 0 0x1 active", timeout: timeout)
        try a.expect("state-table: peer 1 0x0 inactive", timeout: timeout)

        section(children, "A leaves, server stops\n")
        try a.say("quit", echo: say)
        let aStatus = try a.finish(timeout: timeout)
        guard aStatus.isSuccess else { throw ToolFailure("peer A exited with \(aStatus)") }
        let sStatus = try server.finish(signal: SIGTERM, timeout: timeout)
        children.removeAll()
        guard sStatus.isSuccess else { throw ToolFailure("server exited with \(sStatus)") }
        section(children, "demo complete: state changes, doorbells both ways, departure seen\n")
    }

    /// Prints what the children said so far, then a section header, so the transcript reads in order.
    private func section(_ children: [LineProcess], _ title: String) {
        for c in children { c.drain(seconds: 0.05) }
        writeStdout("\n== " + title)
    }

    private func waitForSocket(_ path: String, server: LineProcess) throws {
        // The pause between tries is the wait for the server's exit.
        let live = try Monotonic.poll(timeout: timeout, interval: 0) {
            if (try? UnixSocket.probe(path: path)) == .live { return true }
            if let st = try server.process.waitWithTimeout(seconds: 0.01) { throw server.failure("exited early (\(st))") }
            return false
        }
        if !live { throw server.failure("did not listen on \(path) within \(timeout) s") }
    }
}
