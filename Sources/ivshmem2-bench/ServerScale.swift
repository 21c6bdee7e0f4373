#if canImport(Glibc)
import Glibc
#endif
import CBench
import IvshmemPosix
import IvshmemServer
import Logging

struct ScalePoint {
    var peers: Int
    var vectors: Int
    var messages: Int
    var oursSeconds: Double?
    var rawSeconds: Double?
    var error: String?
    var ratio: Double? { guard let o = oursSeconds, let r = rawSeconds, r > 0 else { return nil }; return o / r }
}

/// N raw wire clients connect to an in-process server (ServerThread) one after another; the
/// clock stops when every client holds INIT and every peer's eventfds (its own included):
/// 1 + N·V fd-carrying messages each. The same receive loop (C, cb_drain) then measures the
/// raw cost of the same message sequence sent over socketpairs by a plain C thread.
struct ServerScaleBench {
    let peerCounts: [Int]
    let vectorCounts: [Int]

    func run() -> [ScalePoint] {
        _ = try? ResourceLimits.raiseOpenFilesToMaximum()
        var out: [ScalePoint] = []
        for v in vectorCounts {
            for n in peerCounts {
                var p = ScalePoint(peers: n, vectors: v, messages: n + v * n * n)
                do { p.oursSeconds = try measureServer(peers: n, vectors: v) } catch { p.error = "\(error)" }
                var messages = 0
                let ns = cb_raw_scm_bench(Int32(n), Int32(v), &messages)
                if ns > 0 { p.rawSeconds = Double(ns) / 1e9 } else if p.error == nil { p.error = "raw SCM_RIGHTS baseline failed" }
                out.append(p)
                writeErr("  server scale N=\(n) V=\(v): ours \(p.oursSeconds.map { format($0 * 1000, 1) + " ms" } ?? "failed") raw \(p.rawSeconds.map { format($0 * 1000, 1) + " ms" } ?? "failed")\(p.error.map { " (\($0))" } ?? "")\n")
            }
        }
        return out
    }

    func measureServer(peers n: Int, vectors v: Int) throws -> Double {
        var config = ServerConfiguration()
        config.maxPeers = UInt64(max(n, 2))
        config.vectors = UInt64(v)
        config.size = 1 << 20
        config.backlog = 1024
        let server = try PrivateServer(configuration: config, prefix: "ivshmem2-bench", label: "bench-server", logLevel: .critical)
        var sockets: [Int32] = Array(repeating: -1, count: n)
        var got = [Int](repeating: 0, count: n)
        var fdsGot = [Int](repeating: 0, count: n)
        let epfd = cb_epoll_create()
        defer {
            server.stop()
            for s in sockets where s >= 0 { close(s) }
            close(epfd)
        }
        let target = n + v * n * n
        var total = 0
        let t0 = nowNS()
        for i in 0..<n {
            let s = try UnixSocket.connect(path: server.socketPath)
            try s.setNonBlocking(true)
            sockets[i] = s.rawValue
            guard cb_epoll_add(epfd, s.rawValue, UInt64(i)) == 0 else { throw BenchError("epoll_ctl failed") }
            _ = cb_drain(epfd, sockets, &got, &fdsGot, target, &total, 0)
        }
        while total < target {
            let r = cb_drain(epfd, sockets, &got, &fdsGot, target, &total, 10_000)
            if r < 0 { throw BenchError("receive failed") }
            if r == 0 { throw BenchError("stalled at \(total) of \(target) messages") }
        }
        let t1 = nowNS()
        let expected = 1 + n * v
        for i in 0..<n where got[i] != expected || fdsGot[i] != expected {
            throw BenchError("peer \(i) got \(got[i]) messages / \(fdsGot[i]) fds, expected \(expected)")
        }
        return Double(t1 - t0) / 1e9
    }
}
