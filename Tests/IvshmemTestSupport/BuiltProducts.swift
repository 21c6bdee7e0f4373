#if canImport(Glibc)
import Glibc
#endif
import IvshmemPosix

/// The built `ivshmem2` executable the tests spawn.
public enum BuiltProducts {
    public struct Missing: Error, CustomStringConvertible {
        public var description: String {
            "the ivshmem2 executable is not built next to the tests; build it (swift build --product ivshmem2, make test does) first"
        }
    }

    /// `ivshmem2` of the same build as the test bundle; `IVSHMEM2_BINARY` overrides where to
    /// look (a build folder of another configuration).
    public static func ivshmem2() throws -> String {
        if let override = getenv("IVSHMEM2_BINARY") { return String(cString: override) }
        guard let path = SpawnedProcess.siblingExecutable(named: "ivshmem2") else { throw Missing() }
        return path
    }
}
