import IvshmemPosix
import IvshmemWire
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Peers and local users that attack the server (SRV-SHM-5…8, SRV-SOCK-3, -4, SRV-IO-4)

extension BuiltinChecks {
    static let serverHostileChecks: [BuiltinCheck] = [
        BuiltinCheck(name: "server-memfd-sealed", summary: "the memfd's size is sealed: a peer can neither truncate nor grow it nor change the seals; the server keeps serving") { ctx in
            try ServerCheckSupport.expectAccepted(ctx, ["--memfd", "-l", "64K"], requirement: "SRV-SHM-5") { child, c in
                let fd = c.kept[0]
                let seals = try IvshmemPosix.SharedMemory.seals(of: fd)
                try require(seals.isSuperset(of: [.shrink, .grow, .seal]), "seals shrink|grow|seal on the INIT fd", "\(seals)")
                for size in [0, 4096, 1 << 40] {
                    let refused = (try? fd.truncate(to: size)) == nil
                    try require(refused, "ftruncate(\(size)) of the INIT fd to fail", "it succeeded")
                }
                try require((try? fd.addSeals(.write)) == nil, "no seal can be added (F_SEAL_SEAL)", "F_SEAL_WRITE was added")
                let size = try fd.size()
                try require(size == 64 << 10, "the size still 64 KiB", "\(size) bytes")
                let mapping = try c.mapSharedMemory(fd)
                ServerCheckSupport.store32(mapping, 64, 0x77)  // reading and writing stay allowed
                c.close()
                try ServerCheckSupport.expectServing(child, after: "a peer tried to resize the memfd and left")
            }
        },
        BuiltinCheck(name: "server-resized-shm", summary: "with -M or -m, a peer that shrinks or grows the memory kills nothing: the server restores the size before the next INIT") { ctx in
            let name = ServerChild.uniqueShmName()
            defer { try? IvshmemPosix.SharedMemory.unlinkNamed(name) }
            let dir = try FileSystem.makeTemporaryDirectory(template: "/tmp/ivshmem2-shmdir.XXXXXX")
            defer { FileSystem.removeDirectoryTree(dir) }
            for backing in [["-M", name], ["-m", dir]] {
                let child = try ServerChild(arguments: backing + ["-l", "64K", "-n", "3"], shmName: backing[0] == "-M" ? name : nil, captureStderr: true)
                defer { child.stop() }
                try child.waitListening()
                let x = try child.connect()
                defer { x.close() }
                _ = try x.takeIntroduction()
                for hostileSize in [0, 1 << 40] {
                    try x.kept[0].truncate(to: hostileSize)
                    let y = try child.connect()
                    defer { y.close() }
                    _ = try y.expect(.initial(InitialInfo(id: 1, maxPeers: 3, vectors: 1, protocol: 0, outputSectionSize: 0)), who: "a newcomer after a resize to \(hostileSize)")
                    let size = try y.kept[0].size()
                    try require(size == 64 << 10, "the newcomer's INIT fd of 64 KiB after a peer resized it to \(hostileSize) (\(backing[0]))", "\(size) bytes")
                    // Now the newcomer truncates and leaves: zeroing its entry must not kill the server.
                    try y.kept[0].truncate(to: 0)
                    y.close()
                    _ = try x.take(until: .peerGone(id: 1))  // Y's eventfd, then its departure
                    try require(child.waitExit(timeout: 0) == nil, "the server still running (\(backing[0]))", "it ended: \(child.errorOutput())")
                }
            }
        },
        BuiltinCheck(name: "server-shm-foreign", summary: "an existing -M object readable by others (or, as root, owned by another user) is refused and left as it was; a fresh one is created 0600") { ctx in
            var planted: [(mode: mode_t, owner: uid_t?, mentions: String)] = [(0o644, nil, "mode 0644"), (0o660, nil, "mode 0660")]
            if geteuid() == 0 { planted.append((0o600, 65534, "belongs to uid 65534")) }  // only root can give a file away
            for p in planted {
                let name = ServerChild.uniqueShmName()
                defer { try? IvshmemPosix.SharedMemory.unlinkNamed(name) }
                let fd = try IvshmemPosix.SharedMemory.openNamed(name, size: 8192, mode: p.mode)
                ServerCheckSupport.store32(try MemoryMapping(fd: fd, size: 8192), 0, 0xFEED)
                if let owner = p.owner { try require(fchown(fd.rawValue, owner, owner) == 0, "the planted object given to uid \(owner)", "fchown failed") }
                fd.closeQuietly()
                try ServerCheckSupport.expectRefusal(ctx, ["-M", name, "-l", "64K"], naming: ["/dev/shm/\(name)"], alsoNaming: [p.mentions], requirement: "SRV-SHM-7")
                let st = try FileSystem.status(ofPath: "/dev/shm/" + name)
                try require(st?.size == 8192 && st?.permissions == p.mode, "the planted object left as it was (8192 bytes, 0\(String(p.mode, radix: 8)))",
                            st.map { "\($0.size) bytes, 0\(String($0.permissions, radix: 8))" } ?? "removed")
                let again = try IvshmemPosix.SharedMemory.openNamed(name, size: 8192, mode: p.mode)
                defer { again.closeQuietly() }
                let word = ServerCheckSupport.load32(try MemoryMapping(fd: again, size: 8192), 0)
                try require(word == 0xFEED, "the planted object's content untouched", "0x\(String(word, radix: 16))")
            }
            let fresh = ServerChild.uniqueShmName()
            defer { try? IvshmemPosix.SharedMemory.unlinkNamed(fresh) }
            try ServerCheckSupport.expectAccepted(ctx, ["-M", fresh, "-l", "64K"], requirement: "SRV-SHM-7") { _, _ in
                let mode = try FileSystem.status(ofPath: "/dev/shm/" + fresh)?.permissions
                try require(mode == 0o600, "a fresh object created 0600", mode.map { "0" + String($0, radix: 8) } ?? "missing")
            }
        },
        BuiltinCheck(name: "server-shm-locked", summary: "a second server with the same -M name refuses to start; the first one's object is untouched and it keeps serving") { ctx in
            let name = ServerChild.uniqueShmName()
            let first = try ServerChild(arguments: ["-M", name, "-l", "64K"], shmName: name)
            defer { first.stop() }
            try first.waitListening()
            let x = try first.connect()
            defer { x.close() }
            _ = try x.takeIntroduction()
            let table = try x.mapSharedMemory(x.kept[0])
            ServerCheckSupport.store32(table, 0, 0x5A)        // the State Table
            ServerCheckSupport.store32(table, 4096, 0xDA7A)   // the R/W section
            try ServerCheckSupport.expectRefusal(ctx, ["-M", name, "-l", "64K"], naming: ["another server"], alsoNaming: [name], requirement: "SRV-SHM-8")
            try require(ServerCheckSupport.load32(table, 0) == 0x5A, "the first server's State Table entry kept", "0x\(String(ServerCheckSupport.load32(table, 0), radix: 16))")
            try require(ServerCheckSupport.load32(table, 4096) == 0xDA7A, "the first server's R/W section kept", "0x\(String(ServerCheckSupport.load32(table, 4096), radix: 16))")
            try require((try FileSystem.status(ofPath: "/dev/shm/" + name))?.size == 64 << 10, "/dev/shm/\(name) still there with 64 KiB", "removed or resized")
            try ServerCheckSupport.expectServing(first, after: "a second server was refused its object")
        },
        BuiltinCheck(name: "server-lock-symlink", summary: "a symbolic link (or a FIFO) at <socket>.lock is not followed: the server refuses to start, names it, creates nothing; a regular lock file is fine") { ctx in
            let dir = try FileSystem.makeTemporaryDirectory(template: "/tmp/ivshmem2-lock.XXXXXX")
            defer { FileSystem.removeDirectoryTree(dir) }
            let socket = dir + "/s.sock"
            try require(symlink(dir + "/target", socket + ".lock") == 0, "a symbolic link planted at \(socket).lock", "symlink failed")
            try ServerCheckSupport.expectRefusal(ctx, ["-l", "64K"], socketPath: socket, naming: ["symbolic link"], alsoNaming: [socket + ".lock"], requirement: "SRV-SOCK-3")
            try require((try FileSystem.status(ofPath: dir + "/target")) == nil, "nothing created at the link's target", "\(dir)/target exists")
            try FileSystem.unlink(socket + ".lock")
            try require(mkfifo(socket + ".lock", 0o600) == 0, "a FIFO planted at \(socket).lock", "mkfifo failed")
            try ServerCheckSupport.expectRefusal(ctx, ["-l", "64K"], socketPath: socket, naming: ["not a regular file"], requirement: "SRV-SOCK-3")
            try FileSystem.unlink(socket + ".lock")
            try ServerCheckSupport.expectAccepted(ctx, ["-l", "64K"], socketPath: socket, requirement: "SRV-SOCK-3")
        },
        BuiltinCheck(name: "server-socket-mode-at-bind", summary: "the socket is created with the --mode permissions") { ctx in
            try ServerCheckSupport.expectAccepted(ctx, ["-l", "64K", "--mode", "0604"], requirement: "SRV-SOCK-4") { child, _ in
                let st = try FileSystem.status(ofPath: child.socketPath)
                try require(st?.permissions == 0o604, "socket file mode 0604", st.map { "0" + String($0.permissions, radix: 8) } ?? "missing")
            }
        },
        BuiltinCheck(name: "server-fd-bound", summary: "a peer that never reads is dropped when its queue holds too many descriptors; the server's descriptors come back") { ctx in
            let child = try ServerChild(arguments: ["-l", "64K", "-n", "4", "-V", "2", "--queue-fd-limit", "40"], captureStderr: true)
            defer { child.stop() }
            try child.waitListening()
            let silent = try child.connect()  // id 0, never reads
            defer { silent.close() }
            let reader = try child.connect()
            defer { reader.close() }
            _ = try reader.takeIntroduction()
            let baseline = child.openDescriptorCount()
            var dropped = false
            for cycle in 0..<2000 where !dropped {
                let churner = try child.connect()
                for v in 0..<UInt32(2) { try reader.expect(.eventFD(id: 2, vector: v), who: "R in cycle \(cycle)") }
                churner.close()
                while let (m, _) = try reader.nextDecoded(timeout: 5) {
                    if m == .peerGone(id: 0) { dropped = true }
                    if m == .peerGone(id: 2) { break }
                }
                reader.closeKept()
            }
            try require(dropped, "the silent peer dropped (PEER_GONE(0) to the reader, SRV-IO-4)", "not dropped after 2000 cycles")
            // The silent peer's socket and 2 eventfds are gone, and every departed churner's eventfds.
            // At most: the baseline may include descriptors still in flight when it was taken.
            try require(Monotonic.poll(timeout: 5) { child.openDescriptorCount() <= baseline - 3 }, "the server back to \(baseline - 3) descriptors", "\(child.openDescriptorCount())")
        },
    ]
}
