//! The wire event types of the Go 1.22+ trace format and how many varint arguments each carries.
//!
//! Every event must be stepped over correctly to reach the few this crate reports, so the table
//! covers all of them. Numbering is the runtime's (`internal/trace/tracev2`): types only ever
//! get added at the end, so one table serves every version; an older trace simply never
//! contains the newer types.

/// Structural events: they open batches or sit in the special batches, never in an M's stream.
pub const EV_EVENT_BATCH: u8 = 1;
pub const EV_STACKS: u8 = 2;
pub const EV_STACK: u8 = 3;
pub const EV_STRINGS: u8 = 4;
pub const EV_STRING: u8 = 5;
pub const EV_CPU_SAMPLES: u8 = 6;
pub const EV_CPU_SAMPLE: u8 = 7;
pub const EV_FREQUENCY: u8 = 8;

pub const EV_PROCS_CHANGE: u8 = 9;
pub const EV_PROC_START: u8 = 10;
pub const EV_PROC_STOP: u8 = 11;
pub const EV_PROC_STEAL: u8 = 12;
pub const EV_PROC_STATUS: u8 = 13;

pub const EV_GO_CREATE: u8 = 14;
pub const EV_GO_CREATE_SYSCALL: u8 = 15;
pub const EV_GO_START: u8 = 16;
pub const EV_GO_DESTROY: u8 = 17;
pub const EV_GO_DESTROY_SYSCALL: u8 = 18;
pub const EV_GO_STOP: u8 = 19;
pub const EV_GO_BLOCK: u8 = 20;
pub const EV_GO_UNBLOCK: u8 = 21;
pub const EV_GO_SYSCALL_BEGIN: u8 = 22;
pub const EV_GO_SYSCALL_END: u8 = 23;
pub const EV_GO_SYSCALL_END_BLOCKED: u8 = 24;
pub const EV_GO_STATUS: u8 = 25;

pub const EV_STW_BEGIN: u8 = 26;
pub const EV_STW_END: u8 = 27;

pub const EV_GC_ACTIVE: u8 = 28;
pub const EV_GC_BEGIN: u8 = 29;
pub const EV_GC_END: u8 = 30;
pub const EV_GC_SWEEP_ACTIVE: u8 = 31;
pub const EV_GC_SWEEP_BEGIN: u8 = 32;
pub const EV_GC_SWEEP_END: u8 = 33;
pub const EV_GC_MARK_ASSIST_ACTIVE: u8 = 34;
pub const EV_GC_MARK_ASSIST_BEGIN: u8 = 35;
pub const EV_GC_MARK_ASSIST_END: u8 = 36;
pub const EV_HEAP_ALLOC: u8 = 37;
pub const EV_HEAP_GOAL: u8 = 38;

pub const EV_GO_LABEL: u8 = 39;
pub const EV_USER_TASK_BEGIN: u8 = 40;
pub const EV_USER_TASK_END: u8 = 41;
pub const EV_USER_REGION_BEGIN: u8 = 42;
pub const EV_USER_REGION_END: u8 = 43;
pub const EV_USER_LOG: u8 = 44;

// Go 1.23.
pub const EV_GO_SWITCH: u8 = 45;
pub const EV_GO_SWITCH_DESTROY: u8 = 46;
pub const EV_GO_CREATE_BLOCKED: u8 = 47;
pub const EV_GO_STATUS_STACK: u8 = 48;
pub const EV_EXPERIMENTAL_BATCH: u8 = 49;

// Go 1.25.
pub const EV_SYNC: u8 = 50;
pub const EV_CLOCK_SNAPSHOT: u8 = 51;

// Go 1.26 (written by 1.25 runtimes only internally).
pub const EV_END_OF_GENERATION: u8 = 52;

// Experimental events (GOEXPERIMENT / GODEBUG-gated), numbered from 128.
pub const EV_SPAN: u8 = 128;
pub const EV_GOROUTINE_STACK_FREE: u8 = 136;

/// What the parser needs to know about one event type.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// Go's name for it, as in error messages and the text trace format.
    pub name: &'static str,
    /// Varint arguments after the type byte, the timestamp delta included for timed events.
    pub args: u8,
    /// Appears in an M's event stream with a timestamp delta as its first argument.
    pub timed: bool,
}

const fn timed(name: &'static str, args: u8) -> Option<Spec> {
    Some(Spec {
        name,
        args,
        timed: true,
    })
}

const fn structural(name: &'static str, args: u8) -> Option<Spec> {
    Some(Spec {
        name,
        args,
        timed: false,
    })
}

/// The spec of wire type `typ`, or `None` for a type no Go version writes.
pub const fn spec(typ: u8) -> Option<Spec> {
    match typ {
        EV_EVENT_BATCH => structural("EventBatch", 4),
        EV_STACKS => structural("Stacks", 0),
        EV_STACK => structural("Stack", 2),
        EV_STRINGS => structural("Strings", 0),
        EV_STRING => structural("String", 1),
        EV_CPU_SAMPLES => structural("CPUSamples", 0),
        EV_CPU_SAMPLE => structural("CPUSample", 5),
        EV_FREQUENCY => structural("Frequency", 1),
        EV_PROCS_CHANGE => timed("ProcsChange", 3),
        EV_PROC_START => timed("ProcStart", 3),
        EV_PROC_STOP => timed("ProcStop", 1),
        EV_PROC_STEAL => timed("ProcSteal", 4),
        EV_PROC_STATUS => timed("ProcStatus", 3),
        EV_GO_CREATE => timed("GoCreate", 4),
        EV_GO_CREATE_SYSCALL => timed("GoCreateSyscall", 2),
        EV_GO_START => timed("GoStart", 3),
        EV_GO_DESTROY => timed("GoDestroy", 1),
        EV_GO_DESTROY_SYSCALL => timed("GoDestroySyscall", 1),
        EV_GO_STOP => timed("GoStop", 3),
        EV_GO_BLOCK => timed("GoBlock", 3),
        EV_GO_UNBLOCK => timed("GoUnblock", 4),
        EV_GO_SYSCALL_BEGIN => timed("GoSyscallBegin", 3),
        EV_GO_SYSCALL_END => timed("GoSyscallEnd", 1),
        EV_GO_SYSCALL_END_BLOCKED => timed("GoSyscallEndBlocked", 1),
        EV_GO_STATUS => timed("GoStatus", 4),
        EV_STW_BEGIN => timed("STWBegin", 3),
        EV_STW_END => timed("STWEnd", 1),
        EV_GC_ACTIVE => timed("GCActive", 2),
        EV_GC_BEGIN => timed("GCBegin", 3),
        EV_GC_END => timed("GCEnd", 2),
        EV_GC_SWEEP_ACTIVE => timed("GCSweepActive", 2),
        EV_GC_SWEEP_BEGIN => timed("GCSweepBegin", 2),
        EV_GC_SWEEP_END => timed("GCSweepEnd", 3),
        EV_GC_MARK_ASSIST_ACTIVE => timed("GCMarkAssistActive", 2),
        EV_GC_MARK_ASSIST_BEGIN => timed("GCMarkAssistBegin", 2),
        EV_GC_MARK_ASSIST_END => timed("GCMarkAssistEnd", 1),
        EV_HEAP_ALLOC => timed("HeapAlloc", 2),
        EV_HEAP_GOAL => timed("HeapGoal", 2),
        EV_GO_LABEL => timed("GoLabel", 2),
        EV_USER_TASK_BEGIN => timed("UserTaskBegin", 5),
        EV_USER_TASK_END => timed("UserTaskEnd", 3),
        EV_USER_REGION_BEGIN => timed("UserRegionBegin", 4),
        EV_USER_REGION_END => timed("UserRegionEnd", 4),
        EV_USER_LOG => timed("UserLog", 5),
        EV_GO_SWITCH => timed("GoSwitch", 3),
        EV_GO_SWITCH_DESTROY => timed("GoSwitchDestroy", 3),
        EV_GO_CREATE_BLOCKED => timed("GoCreateBlocked", 4),
        EV_GO_STATUS_STACK => timed("GoStatusStack", 5),
        EV_EXPERIMENTAL_BATCH => structural("ExperimentalBatch", 4),
        EV_SYNC => structural("Sync", 0),
        // Timed in Go's table, but only ever valid inside a sync batch.
        EV_CLOCK_SNAPSHOT => timed("ClockSnapshot", 4),
        EV_END_OF_GENERATION => structural("EndOfGeneration", 0),
        128 => timed("Span", 4),
        129 => timed("SpanAlloc", 4),
        130 => timed("SpanFree", 2),
        131 => timed("HeapObject", 3),
        132 => timed("HeapObjectAlloc", 3),
        133 => timed("HeapObjectFree", 2),
        134 => timed("GoroutineStack", 3),
        135 => timed("GoroutineStackAlloc", 3),
        EV_GOROUTINE_STACK_FREE => timed("GoroutineStackFree", 2),
        _ => None,
    }
}

/// Timed-event argument counts indexed by type (0 = not a timed event): the hot loop's lookup.
#[expect(
    clippy::indexing_slicing,
    reason = "evaluated at compile time, where an index out of range fails the build"
)]
pub static TIMED_ARGS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        if let Some(s) = spec(i as u8) {
            if s.timed {
                t[i] = s.args;
            }
        }
        i += 1;
    }
    t
};

/// The most arguments any timed event has (Go's `MaxTimedEventArgs`).
pub const MAX_TIMED_ARGS: usize = 5;

/// Go's name for an event type, for error messages.
pub fn name(typ: u8) -> String {
    match spec(typ) {
        Some(s) => s.name.to_string(),
        None => format!("Invalid({typ})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for typ in 0..=255u8 {
            if let Some(s) = spec(typ) {
                assert!(seen.insert(s.name), "{} twice", s.name);
            }
        }
        assert_eq!(seen.len(), 52 + 9);
    }
}
