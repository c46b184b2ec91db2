// Package intercept runs a program under a seccomp user-notification supervisor and hands the
// system calls it traps to caller-supplied handlers. It is the mechanism only: which calls to
// trap and what to answer is decided by its callers.
//
// What it owns, and for how long:
//
//   - Processes: Start launches the program as a direct child of the calling process (through a
//     short-lived trampoline: the own executable re-executed with DOPPEL_TRAMPOLINE=1, which
//     installs the filter on the thread that then execs the program). The program and every
//     descendant it starts (reap_linux.go says how they are told apart from other processes)
//     belong to the Supervisor until Wait returns: Wait reaps the program, then sends SIGTERM
//     (and SIGCONT) to the descendants still running, SIGKILL to those left after 2 s, and
//     reaps the ones that were re-parented to this process. The first Start makes
//     the calling process a child subreaper (PR_SET_CHILD_SUBREAPER) for the rest of its life, so
//     that orphaned descendants are re-parented to it rather than to init. (Orphans of its other
//     children are re-parented to it too; this package neither signals nor reaps those.)
//     Descendants of the program that exit while it runs stay zombies until Wait reaps them.
//   - One OS thread for the life of the process: Start forks from a dedicated locked thread,
//     because the program's parent-death signal (SIGKILL) fires when the forking thread exits.
//   - File descriptors: the seccomp listener and an eventfd per Supervisor, from Start until Wait
//     returns. Start also holds a socketpair and a memfd while the trampoline runs. Files that
//     Request.GetFD returns belong to the caller.
//   - Goroutines: one notification goroutine per Supervisor, on a locked OS thread with
//     asynchronous signals blocked, from Start until Wait returns. Handlers run on it inline.
//   - Kernel state: the filter itself lives in the program's process tree and dies with it; once
//     Wait has closed the listener, trapped calls of any straggler fail with ENOSYS.
package intercept
