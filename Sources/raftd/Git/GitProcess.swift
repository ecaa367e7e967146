import CRaftIO
import Glibc
import RaftEngine

/// A git process serving one request: its standard input a file (the spooled request
/// body) or nothing, its standard output a pipe read by the caller, its standard error a
/// file kept for messages. Runs in its own process group at the children's nice value.
final class GitProcess {
    let pid: pid_t
    /// The read end of the child's standard output (blocking).
    let output: Int32
    private var waited: (exited: Bool, code: Int32)?

    /// Starts `git arguments…` with `environment`. `input`: a descriptor for its standard
    /// input (-1: none); `errorFile`: where its standard error goes; `extra`: a descriptor
    /// the child (and its hooks) hold as 3.
    init(
        git: String, arguments: [String], environment: [String: String], input: Int32, errorFile: Int32,
        extra: Int32 = -1
    ) throws(GitServiceError) {
        let argv = [git] + arguments
        let envp = environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        var pid: pid_t = 0
        var out: Int32 = -1
        let rc = withCStrings(argv) { cArgv in
            withCStrings(envp) { cEnvp in
                craft_spawn(cArgv, cEnvp, nil, input, errorFile, extra, CRAFT_CHILD_NICENESS, &pid, &out)
            }
        }
        guard rc == 0 else {
            throw .internalError("cannot start \(git): \(String(cString: strerror(-rc)))")
        }
        self.pid = pid
        self.output = out
    }

    /// Reads up to `count` bytes of the child's output into `buffer`; 0 at its end.
    func read(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        while true {
            let n = Glibc.read(output, buffer.baseAddress, buffer.count)
            if n < 0 && errno == EINTR { continue }
            return max(n, 0)
        }
    }

    /// The whole output, up to `limit` bytes (more: nil).
    func readAll(limit: Int) -> [UInt8]? {
        var all: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(into: $0) }
            if n == 0 { return all }
            all += chunk[..<n]
            if all.count > limit { return nil }
        }
    }

    /// Kills the child's process group (a client that went away).
    func kill() { _ = Glibc.kill(-pid, SIGKILL) }

    /// Waits for the child; true when it exited with 0.
    @discardableResult
    func wait() -> Bool {
        if waited == nil {
            var exited: Int32 = 0
            var code: Int32 = 0
            if craft_wait(pid, &exited, &code) == 0 {
                waited = (exited != 0, code)
            } else {
                waited = (false, -1)
            }
            close(output)
        }
        return waited!.exited && waited!.code == 0
    }

    /// How it ended, for messages.
    var outcome: String {
        guard let waited else { return "running" }
        return waited.exited ? "exit code \(waited.code)" : "killed by signal \(waited.code)"
    }

    deinit {
        if waited == nil {
            kill()
            wait()
        }
    }
}
