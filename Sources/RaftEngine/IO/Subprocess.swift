import CRaftIO

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Runs a helper program to completion: no shell, no PATH search, exactly the environment
/// given, bounded output and a deadline (then SIGKILL). The one use is validating an
/// incoming pack with `git`, off the apply path.
public struct Subprocess: Sendable {
    public struct Outcome: Sendable {
        /// The exit code; nil when the program was killed by a signal (or the deadline).
        public var exitCode: Int32?
        public var signal: Int32?
        public var timedOut: Bool
        public var standardOutput: [UInt8]
        public var standardError: [UInt8]
        /// More output than the bound was produced (the rest was dropped).
        public var outputTruncated: Bool

        public var succeeded: Bool { exitCode == 0 && !timedOut }

        /// Standard error as text, for messages (at most 1,000 characters).
        public var errorText: String {
            let text = String(decoding: standardError.prefix(1_000), as: UTF8.self)
            return text.hasSuffix("\n") ? String(text.dropLast()) : text
        }
    }

    public var executable: String
    public var environment: [String: String]
    public var maximumOutputBytes = 64 << 20
    public var maximumErrorBytes = 64 << 10
    public var timeoutMilliseconds = 120_000

    public init(executable: String, environment: [String: String]) {
        self.executable = executable
        self.environment = environment
    }

    /// Runs the program with `arguments` in `directory` (nil: ours), `input` on its
    /// standard input. Throws only when it could not be started or waited for.
    public func run(
        _ arguments: [String], in directory: String? = nil, input: [UInt8] = []
    ) throws(IOError) -> Outcome {
        var out = [UInt8](repeating: 0, count: maximumOutputBytes)
        var err = [UInt8](repeating: 0, count: maximumErrorBytes)
        var result = craft_run_result()
        let argv = [executable] + arguments
        let envp = environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        let rc = withCStrings(argv) { cArgv in
            withCStrings(envp) { cEnvp in
                input.withUnsafeBufferPointer { inputBytes in
                    out.withUnsafeMutableBufferPointer { outBytes in
                        err.withUnsafeMutableBufferPointer { errBytes in
                            craft_run(
                                cArgv, cEnvp, directory, inputBytes.baseAddress, inputBytes.count,
                                outBytes.baseAddress, outBytes.count, errBytes.baseAddress, errBytes.count,
                                Int32(clamping: timeoutMilliseconds), &result)
                        }
                    }
                }
            }
        }
        if rc < 0 { try Syscall.failure("run \(executable)", path: directory, code: -rc) }
        out.removeSubrange(Int(result.out_len)...)
        err.removeSubrange(Int(result.err_len)...)
        return Outcome(
            exitCode: result.exited != 0 ? result.exit_code : nil,
            signal: result.exited == 0 ? result.term_signal : nil, timedOut: result.timed_out != 0,
            standardOutput: out, standardError: err, outputTruncated: result.out_truncated != 0)
    }
}

/// Calls `body` with a NULL-terminated array of C strings that live for the call (argv and
/// envp for a child process).
public func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let copies = strings.map { strdup($0) }
    defer { for copy in copies { free(copy) } }
    var pointers: [UnsafePointer<CChar>?] = copies.map { $0.map { UnsafePointer($0) } }
    pointers.append(nil)
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
