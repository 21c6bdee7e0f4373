import Foundation

/// The repository the tests run in (found from this file's path), for fixtures and spec files.
public enum Repository {
    /// The repository's root folder.
    public static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The absolute path of `relative` (e.g. `fixtures/conformance`) inside the repository.
    public static func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }

    /// The text of the repository file `relative`.
    public static func text(_ relative: String) throws -> String { try String(contentsOfFile: path(relative), encoding: .utf8) }
}
