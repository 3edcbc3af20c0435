//! Why a goroutine (or thread) was not on a CPU, read from its stack: the blocking call it is
//! in, named as Go names the wait (`chan receive`, `IO wait`, `sync.Mutex.Lock`, `sleep`, ...).

use super::model::Frames;

/// Functions a blocked stack passes through, outermost API first, and the reason Go's
/// goroutine dumps give for waiting in them. A stack is matched from its root, so the call
/// the program made (`sync.(*Mutex).Lock`) wins over the runtime's machinery under it
/// (`runtime.semacquire1`).
const BLOCKING: &[(&str, &str)] = &[
    ("time.Sleep", "sleep"),
    ("sync.(*Mutex).Lock", "sync.Mutex.Lock"),
    ("sync.(*RWMutex).Lock", "sync.RWMutex.Lock"),
    ("sync.(*RWMutex).RLock", "sync.RWMutex.RLock"),
    ("sync.(*WaitGroup).Wait", "sync.WaitGroup.Wait"),
    ("sync.(*Cond).Wait", "sync.Cond.Wait"),
    ("internal/poll.(*pollDesc).wait", "IO wait"),
    ("internal/poll.runtime_pollWait", "IO wait"),
    ("runtime.chanrecv1", "chan receive"),
    ("runtime.chanrecv2", "chan receive"),
    ("runtime.chanrecv", "chan receive"),
    ("runtime.chansend1", "chan send"),
    ("runtime.chansend", "chan send"),
    ("runtime.selectgo", "select"),
    ("runtime.block", "select (no cases)"),
    ("runtime.gcParkAssist", "GC assist wait"),
    ("sync.runtime_SemacquireMutex", "sync.Mutex.Lock"),
    ("sync.runtime_SemacquireRWMutex", "sync.RWMutex.Lock"),
    ("sync.runtime_SemacquireRWMutexR", "sync.RWMutex.RLock"),
    ("sync.runtime_SemacquireWaitGroup", "sync.WaitGroup.Wait"),
    ("sync.runtime_notifyListWait", "sync.Cond.Wait"),
    ("runtime.semacquire1", "semacquire"),
    ("syscall.Syscall6", "syscall"),
    ("syscall.Syscall", "syscall"),
    ("syscall.RawSyscall6", "syscall"),
    ("syscall.RawSyscall", "syscall"),
    ("syscall.syscall", "syscall"),
    ("internal/runtime/syscall.Syscall6", "syscall"),
];

/// Frames a parked goroutine's stack ends in.
const PARKED: &[&str] = &["runtime.gopark", "runtime.goparkunlock"];

/// How a stack caught by a goroutine snapshot spent that moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Blocked: the reason, and the stack cut at the blocking call (leaf first), so the path
    /// ends at what the program called (`...;main.lockInventory;sync.(*Mutex).Lock`).
    Blocked { reason: &'static str, stack: Frames },
    /// On a CPU or ready to run.
    Running,
}

/// Where the root-most blocking call of `frames` (leaf first) is, and its reason.
fn blocking_call(frames: &Frames) -> Option<(usize, &'static str)> {
    frames.iter().enumerate().rev().find_map(|(i, f)| {
        BLOCKING
            .iter()
            .find(|(name, _)| *name == &**f)
            .map(|(_, reason)| (i, *reason))
    })
}

fn cut(frames: &Frames, at: usize) -> Frames {
    frames
        .get(at..)
        .map(Frames::from)
        .unwrap_or_else(|| frames.clone())
}

/// A goroutine snapshot's stack: blocked (parked, or in a blocking syscall) or running.
pub fn goroutine_state(frames: &Frames) -> State {
    let parked = frames.iter().any(|f| PARKED.contains(&&**f));
    match blocking_call(frames) {
        Some((at, reason)) if parked || reason == "syscall" => State::Blocked {
            reason,
            stack: cut(frames, at),
        },
        // Parked somewhere the table does not know: still waiting, named by what parked it.
        None if parked => State::Blocked {
            reason: "waiting",
            stack: frames.clone(),
        },
        _ => State::Running,
    }
}

/// An off-CPU sample's reason: the blocking call it shows, else plain "off CPU" (a thread
/// switched out in code the table does not name).
pub fn off_cpu_reason(frames: &Frames) -> (&'static str, Frames) {
    match blocking_call(frames) {
        Some((at, reason)) => (reason, cut(frames, at)),
        None => ("off CPU", frames.clone()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn frames(leaf_first: &[&str]) -> Frames {
        leaf_first.iter().map(|f| Arc::<str>::from(*f)).collect()
    }

    #[test]
    fn blocked_goroutines_are_named_by_the_call_the_program_made() {
        let mutex = frames(&[
            "runtime.gopark",
            "runtime.goparkunlock",
            "runtime.semacquire1",
            "sync.runtime_SemacquireMutex",
            "internal/sync.(*Mutex).lockSlow",
            "internal/sync.(*Mutex).Lock",
            "sync.(*Mutex).Lock",
            "main.lockInventory",
            "main.handle",
        ]);
        assert_eq!(
            goroutine_state(&mutex),
            State::Blocked {
                reason: "sync.Mutex.Lock",
                stack: frames(&["sync.(*Mutex).Lock", "main.lockInventory", "main.handle"]),
            }
        );
        let cases: [(&[&str], &str); 5] = [
            (
                &[
                    "runtime.gopark",
                    "runtime.chanrecv",
                    "runtime.chanrecv1",
                    "main.awaitQuote",
                ],
                "chan receive",
            ),
            (&["runtime.gopark", "runtime.selectgo", "main.loop"], "select"),
            (
                &[
                    "runtime.gopark",
                    "runtime.netpollblock",
                    "internal/poll.runtime_pollWait",
                    "internal/poll.(*pollDesc).wait",
                    "internal/poll.(*pollDesc).waitRead",
                    "internal/poll.(*FD).Read",
                    "net.(*conn).Read",
                    "main.callWarehouse",
                ],
                "IO wait",
            ),
            (&["runtime.gopark", "time.Sleep", "main.backOff"], "sleep"),
            (&["runtime.gopark", "runtime.somethingNew", "main.x"], "waiting"),
        ];
        for (stack, reason) in cases {
            match goroutine_state(&frames(stack)) {
                State::Blocked { reason: got, .. } => assert_eq!(got, reason, "{stack:?}"),
                State::Running => panic!("{stack:?} read as running"),
            }
        }
    }

    #[test]
    fn running_and_syscall_goroutines() {
        assert_eq!(
            goroutine_state(&frames(&["main.totalOrder", "main.handle"])),
            State::Running
        );
        // Preempted in the middle of a loop: runnable, not waiting.
        assert_eq!(
            goroutine_state(&frames(&["runtime.asyncPreempt", "main.burn"])),
            State::Running
        );
        match goroutine_state(&frames(&[
            "internal/runtime/syscall.Syscall6",
            "syscall.Syscall",
            "syscall.read",
            "main.readFile",
        ])) {
            State::Blocked { reason, stack } => {
                assert_eq!(reason, "syscall");
                assert_eq!(stack.first().map(|f| &**f), Some("syscall.Syscall"));
            }
            State::Running => panic!("a blocking syscall read as running"),
        }
    }

    #[test]
    fn off_cpu_stacks_without_a_known_call_are_off_cpu() {
        let (reason, stack) = off_cpu_reason(&frames(&[
            "schedule",
            "futex_wait",
            "runtime.futex",
            "runtime.mPark",
        ]));
        assert_eq!(reason, "off CPU");
        assert_eq!(stack.len(), 4);
        let (reason, _) = off_cpu_reason(&frames(&["schedule", "do_nanosleep", "time.Sleep", "main.nap"]));
        assert_eq!(reason, "sleep");
    }
}
