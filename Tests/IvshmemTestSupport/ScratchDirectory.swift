import IvshmemPosix

/// Where test scratch files go: a fresh private directory with a short path (socket paths
/// must fit sun_path), removed with everything in it when the object goes away.
public final class ScratchDirectory {
    public let path: String
    public init() throws { path = try FileSystem.makeTemporaryDirectory(template: "/tmp/ivs2-test-XXXXXX") }
    public func file(_ name: String) -> String { path + "/" + name }
    deinit { FileSystem.removeDirectoryTree(path) }
}
