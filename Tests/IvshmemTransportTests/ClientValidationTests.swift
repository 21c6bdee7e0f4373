import Foundation
import IvshmemHarness
import Testing
import IvshmemTestSupport

/// What a device checks in what a server sends, provoked by a scripted hostile server. The
/// checks themselves live in the harness (`check wire-cli-N`, run by the conformance suite in
/// every profile); this runs the same cases once under the `spec` profile, so `swift test`
/// alone catches a regression, without a second copy of any check.
@Suite(.serialized) struct ClientValidationTests {
    func runConformanceScript(_ name: String) throws {
        let (passed, report) = try ConformanceScripts.run(name)
        #expect(passed, "\(report)")
    }

    @Test("WIRE-CLI-1, WIRE-CLI-2, WIRE-CLI-3, WIRE-CLI-4, WIRE-CLI-5, WIRE-CLI-6, WIRE-CLI-7, WIRE-CLI-8, WIRE-CLI-9, WIRE-CLI-10, WIRE-CLI-11, WIRE-CLI-12, WIRE-CLI-13, WIRE-CLI-14, WIRE-CLI-15, WIRE-CLI-16, WIRE-CLI-17, WIRE-CLI-18, WIRE-CLI-19, WIRE-CLI-20, WIRE-CLI-21, SHM-SIZE-1: every wire-client conformance case passes against a hostile scripted server")
    func wireClientCases() throws { try runConformanceScript("wire-client.ivs") }

    @Test("WIRE-GEN-1, WIRE-GEN-2, WIRE-GEN-3, WIRE-GEN-4, WIRE-INIT-1, WIRE-INIT-2, WIRE-EVT-1, WIRE-GONE-1: what the server puts on the wire, and a device that never writes to it")
    func wireMessageCases() throws { try runConformanceScript("wire-messages.ivs") }
}
