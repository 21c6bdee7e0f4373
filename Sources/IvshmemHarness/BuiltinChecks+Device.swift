extension BuiltinChecks {
    /// Built-in conformance checks for the device requirements that scripts cannot express.
    static let deviceChecks: [BuiltinCheck] = []
}
