extension BuiltinChecks {
    /// Built-in conformance checks for the server requirements that scripts cannot express.
    static let serverChecks: [BuiltinCheck] = []
}
