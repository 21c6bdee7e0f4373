/// The tool's version, printed by `ivshmem2 --version` (and in the man page).
enum ToolVersion {
    static let string = "0.9.0"
}
