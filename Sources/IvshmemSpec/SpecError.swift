/// What can be wrong with a set of spec tables. Every case names the file or field at fault.
public enum SpecError: Error, Equatable, CustomStringConvertible {
    case missingFile(String)
    case malformed(file: String, detail: String)
    case invalidValue(field: String, key: String, text: String)
    case unknownParameter(field: String, name: String)
    case unknownHook(field: String, name: String)
    case unknownProfile(String, known: [String])
    case overlap(String)
    /// A hook in a table that cannot carry it (e.g. `doorbell` in config space).
    case misplacedHook(field: String, hook: String, part: String)
    case duplicateHook(field: String, hook: String, other: String)
    /// A hook the model needs is absent from its table.
    case missingHook(hook: String, part: String)
    /// The error happened while loading table file `file`.
    indirect case inFile(String, SpecError)

    /// The error without the file it happened in.
    public var withoutFile: SpecError {
        if case .inFile(_, let inner) = self { return inner.withoutFile }
        return self
    }
    /// A file in a spec-change directory that is not one of the table files.
    case unexpectedFile(String, known: [String])

    public var description: String {
        switch self {
        case .missingFile(let f): return "spec table \(f) is missing"
        case .malformed(let f, let d): return "spec table \(f) is malformed: \(d)"
        case .invalidValue(let field, let key, let text): return "spec field '\(field)': '\(key)' has invalid value '\(text)'"
        case .unknownParameter(let field, let name): return "spec field '\(field)' uses unknown parameter @\(name)"
        case .unknownHook(let field, let name): return "spec field '\(field)' names unknown hook '\(name)'"
        case .unknownProfile(let p, let known): return "unknown profile '\(p)' (known: \(known.joined(separator: ", ")))"
        case .overlap(let d): return "spec layout overlaps: \(d)"
        case .misplacedHook(let field, let hook, let part): return "spec field '\(field)': hook '\(hook)' does not belong in \(part)"
        case .duplicateHook(let field, let hook, let other): return "spec field '\(field)': hook '\(hook)' is already on '\(other)'"
        case .missingHook(let hook, let part): return "\(part) has no field with hook '\(hook)', which the model needs"
        case .inFile(let file, let inner):
            if case .inFile = inner { return inner.description }
            return "\(file): \(inner)"
        case .unexpectedFile(let f, let known):
            return "\(f) is not a spec table (the tables are \(known.joined(separator: ", ")); notes may be *.txt or *.md)"
        }
    }
}
