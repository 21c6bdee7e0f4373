import IvshmemPosix

/// The data files the tool reads by default (the conformance suite, the spec, example spec
/// changes): in a checkout they are relative to the current directory; `make install` puts
/// them under PREFIX/share/ivshmem2, found from the installed binary (PREFIX/bin/ivshmem2).
enum InstalledData {
    /// Where `make install` puts the data, relative to the directory of the executable.
    static let shareRelativeToBinary = "../share/ivshmem2"

    /// `relative` under the current directory if it exists there, else under the installed
    /// share directory; a ``ToolFailure`` naming both places and `option` otherwise.
    static func path(_ relative: String, option: String) throws -> String {
        if exists(relative) { return relative }
        var looked = ["./" + relative]
        if let share = shareDirectory() {
            let candidate = share + "/" + relative
            if exists(candidate) { return candidate }
            looked.append(candidate)
        }
        throw ToolFailure("cannot find \(relative) (looked at \(looked.joined(separator: " and "))): run from the repository root, install with make install, or pass \(option)")
    }

    /// PREFIX/share/ivshmem2 for the running binary, if it can be found.
    static func shareDirectory() -> String? {
        guard let exe = try? SpawnedProcess.currentExecutablePath(), let slash = exe.lastIndex(of: "/") else { return nil }
        return String(exe[..<slash]) + "/" + shareRelativeToBinary
    }

    static func exists(_ path: String) -> Bool { ((try? FileSystem.status(ofPath: path)) ?? nil) != nil }
}
