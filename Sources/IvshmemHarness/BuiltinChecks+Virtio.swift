extension BuiltinChecks {
    /// Virtio over ivshmem (spec/virtio-ivshmem.md): the scenarios of VirtioChecks on the
    /// case's server, under the case's profile.
    static let virtioChecks: [BuiltinCheck] = [
        ("virtio-console-round-trip", "console bytes both ways over the case's server", VirtioChecks.consoleRoundTrip),
        ("virtio-block-round-trip", "block sectors written, read back and found in the image file", VirtioChecks.blockRoundTrip),
        ("virtio-header-and-transactions", "header layout, queue_sel and write transactions", VirtioChecks.headerAndTransactions),
        ("virtio-transaction-never-cleared", "a pending write transaction becomes a finding", VirtioChecks.transactionNeverCleared),
        ("virtio-feature-negotiation", "feature words, VERSION_1, refusal of features not offered", VirtioChecks.featureNegotiation),
        ("virtio-status-rules", "status 0 resets; DRIVER_OK without FEATURES_OK", VirtioChecks.statusRules),
        ("virtio-queue-violations", "bad queue sizes, rings and buffers, an early kick", VirtioChecks.queueViolations),
        ("virtio-config-changes", "config generation, config_event, config writes", VirtioChecks.configChanges),
        ("virtio-peer-leaves", "the back-end restarts, the front-end fails", VirtioChecks.peerLeaves),
    ].map { name, summary, scenario in
        BuiltinCheck(name: name, summary: summary) { ctx in try scenario(ctx.socketPath, ctx.profile) }
    } + [
        BuiltinCheck(name: "virtio-link-requirements", summary: "links that are not virtio links are refused (own servers)") { ctx in
            try VirtioChecks.linkRequirements(profile: ctx.profile)
        },
    ]
}
