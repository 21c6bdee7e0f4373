extension BuiltinChecks {
    /// Built-in conformance checks for the wire requirements that scripts cannot express.
    static let wireChecks: [BuiltinCheck] = []
}
