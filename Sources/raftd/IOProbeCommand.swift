import ArgumentParser
import RaftEngine

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// `raftd io-probe`: what the I/O layer will use on this machine, and a real durable write
/// through the chosen backend in the given directory.
struct IOProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "io-probe",
        abstract: "Report the I/O backend, checksum, compression and metadata libraries, and test a durable write."
    )

    @Option(help: "Directory in which to test a batched write + fdatasync (left as it was).")
    var directory: String = "."

    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text

    @Flag(
        help:
            "Measure the machine's floors instead: the fdatasync of a 4 KiB append (p50, p99 over 500) in --directory, and a loopback TCP round trip (over 5000)."
    )
    var floors = false

    func run() throws {
        if floors {
            let measured = try MachineFloors.measure(directory: directory)
            print(format == .json ? measured.json : measured.text)
            return
        }
        do {
            _ = try IOBackendChoice.resolve(requested: IOBackendChoice.requestedByEnvironment)
        } catch {
            throw ValidationError("RAFTD_IO_BACKEND: \(error)")
        }
        let report = IOProbe.run(directory: directory)
        switch format {
        case .text: print(report.text)
        case .json: print(report.json)
        }
        if !report.writeSucceeded { throw ExitCode(1) }
    }
}
