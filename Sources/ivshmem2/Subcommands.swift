import ArgumentParser

extension Ivshmem2 {
    /// Every subcommand, in the order `--help` lists them.
    static let allSubcommands: [any ParsableCommand.Type] = [
        ServerCommand.self,
        ServerV1Command.self,
        PeerCommand.self,
        DemoCommand.self,
        RunCommand.self,
        ConformanceCommand.self,
        SimulateCommand.self,
        SpecCommand.self,
        SimulationWorkerCommand.self,
        DumpConfigCommand.self,
        QEMUCommand.self,
        VirtioCommand.self,
    ]
}
