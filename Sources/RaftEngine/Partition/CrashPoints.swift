import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Kill points inside apply, checkpoints and attachment writes, for the kill -9 tests (a child process arms
/// them; nothing else does). Every file operation of apply counts one; when the armed
/// count is reached, the process sends itself SIGKILL, exactly as a power cut or the OOM
/// killer would end it (no cleanup, no flush of anything still in user space).
///
/// Unarmed (always, outside that test), a point costs one relaxed atomic load.
public enum CrashPoints {
    private static let remaining = Atomic<Int>(-1)
    private static let passed = Atomic<Int>(0)

    /// Kills the process at the `count`th point from now (0: at the next one).
    public static func arm(killAt count: Int) {
        precondition(count >= 0)
        remaining.store(count, ordering: .relaxed)
    }

    /// Points passed so far (a run without a kill counts them, to choose where to kill).
    public static var count: Int { passed.load(ordering: .relaxed) }

    static func reached() {
        passed.add(1, ordering: .relaxed)
        guard remaining.load(ordering: .relaxed) >= 0 else { return }
        if remaining.subtract(1, ordering: .relaxed).oldValue == 0 {
            kill(getpid(), SIGKILL)
            while true { pause() }
        }
    }
}
