//! The scheduler model that puts events in order, and the event times it yields.
//!
//! Go's parser does not report raw timestamps: it reports events in an order consistent with
//! the runtime's partial order (a goroutine is unblocked before it starts, a P is stopped
//! before another M starts it, GC begin precedes GC end, ...), and forces every reported time
//! to be strictly greater than the one before it (`max(t, previous + 1)`). With a 64 ns clock
//! many events share a tick, so a pause's reported begin can be its tick plus a few
//! nanoseconds, depending on which events Go emitted just before it. To report the times Go
//! reports, this module replays the same model: the states of goroutines, Ps and Ms, their
//! sequence numbers and the GC sequence, deciding for each candidate event whether it can
//! happen yet, and emitting exactly the events Go emits (some wire events stand for two or
//! three). It keeps what ordering needs and the checks that cost nothing; it does not check
//! user regions, task names, or that stack and string references resolve (Go does).

use foldhash::{HashMap, HashSet};

use crate::generation::Generation;
use crate::spec::*;
use crate::{GcCycle, Limits, Stw, TraceError};

mod handlers;

use handlers::active_range;

pub const NO_THREAD: u64 = u64::MAX;
pub const NO_PROC: u64 = u64::MAX;
pub const NO_GOROUTINE: u64 = u64::MAX;

// Goroutine statuses on the wire.
const GO_RUNNABLE: u64 = 1;
const GO_RUNNING: u64 = 2;
const GO_SYSCALL: u64 = 3;
const GO_WAITING: u64 = 4;
const GO_STATUS_END: u64 = 5;

// P statuses on the wire.
const PROC_RUNNING: u64 = 1;
const PROC_IDLE: u64 = 2;
const PROC_SYSCALL: u64 = 3;
/// A P in a syscall whose M is no longer known (see Go's `ProcSyscallAbandoned`).
const PROC_SYSCALL_ABANDONED: u64 = 4;
const PROC_STATUS_END: u64 = 5;

/// An event read from an M's stream, its time converted to nanoseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ev {
    pub typ: u8,
    pub time: i64,
    /// Arguments after the timestamp delta.
    pub args: [u64; MAX_TIMED_ARGS - 1],
    /// Stream offset, for errors.
    pub offset: u64,
}

/// A resource's sequence number, scoped to the generation that wrote it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Seq {
    gen: u64,
    n: u64,
}

impl Seq {
    fn follows(self, prev: Seq) -> bool {
        self.gen == prev.gen && self.n == prev.n.wrapping_add(1)
    }
}

#[derive(Debug)]
struct GState {
    status: u64,
    seq: Seq,
    /// Open stop-the-world ranges: (reason string id, index in the output).
    stw: Vec<(u64, usize)>,
    mark_assist: bool,
}

impl GState {
    fn new(status: u64, seq: Seq) -> Self {
        GState {
            status,
            seq,
            stw: Vec::new(),
            mark_assist: false,
        }
    }
}

#[derive(Debug)]
struct PState {
    status: u64,
    seq: Seq,
    sweeping: bool,
}

#[derive(Clone, Copy, Debug)]
struct MState {
    g: u64,
    p: u64,
    /// An event of this M has been offered (or a status named it): before that Go has no
    /// state for it, which some checks tell apart from an M holding nothing.
    seen: bool,
}

const NO_M_STATE: MState = MState {
    g: NO_GOROUTINE,
    p: NO_PROC,
    seen: false,
};

/// What an event runs on: thread, proc, goroutine (each may be absent).
#[derive(Clone, Copy, Debug)]
struct Ctx {
    m: u64,
    p: u64,
    g: u64,
}

#[derive(Clone, Copy, PartialEq)]
enum Req {
    Must,
    May,
    MustNot,
}
use Req::*;

#[inline]
fn check(ctx: Ctx, m: Req, p: Req, g: Req) -> Result<(), String> {
    #[inline]
    fn one(have: bool, req: Req, what: &str) -> Result<(), String> {
        match (req, have) {
            (Must, false) => Err(format!("expected a {what} but had none")),
            (MustNot, true) => Err(format!("expected no {what} but had one")),
            _ => Ok(()),
        }
    }
    one(ctx.m != NO_THREAD, m, "thread")?;
    one(ctx.p != NO_PROC, p, "proc")?;
    one(ctx.g != NO_GOROUTINE, g, "goroutine")
}

/// Goroutine events that run user code need all three.
#[inline]
fn check_user(ctx: Ctx) -> Result<(), String> {
    check(ctx, Must, Must, Must)
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum GcState {
    Undetermined,
    NotRunning,
    Running,
}

/// Collects what the crate reports, applying Go's strictly-increasing time rule to every
/// event Go would emit, reported or not.
#[derive(Debug)]
pub struct Sink {
    /// Time of the last emitted event, ns.
    pub last: i64,
    /// Time of the last emitted event other than a goroutine's status (see
    /// [`Sink::emit_status`]).
    pub last_live: i64,
    /// Time of the first emitted event.
    pub first: Option<i64>,
    /// Events emitted.
    pub count: u64,
    pub stw: Vec<Stw>,
    pub gc: Vec<GcCycle>,
    /// The GC cycle in progress, an index into `gc`.
    open_gc: Option<usize>,
    max_stw: usize,
    max_gc: usize,
}

impl Sink {
    pub fn new(limits: &Limits) -> Self {
        Sink {
            last: 0,
            last_live: 0,
            first: None,
            count: 0,
            stw: Vec::new(),
            gc: Vec::new(),
            open_gc: None,
            max_stw: limits.max_stw,
            max_gc: limits.max_gc,
        }
    }

    /// Emits an event at `t`, returning the time Go reports for it.
    #[inline]
    pub fn emit(&mut self, t: i64) -> Result<i64, String> {
        let t = self.emit_status(t)?;
        self.last_live = t;
        Ok(t)
    }

    /// As [`Sink::emit`], for a goroutine's status. Go writes the statuses of goroutines that
    /// did not run in a generation after it has moved tracing on (or off) and flushed every
    /// thread's buffer: at a trace's end they are stamped after tracing stopped, by
    /// milliseconds on a busy machine, when a GC may already have begun untraced.
    #[inline]
    pub fn emit_status(&mut self, t: i64) -> Result<i64, String> {
        let t = if t <= self.last {
            self.last.checked_add(1).ok_or("event time overflows")?
        } else {
            t
        };
        self.last = t;
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(t);
        }
        Ok(t)
    }
}

pub struct Ordering {
    /// The first generation's number: statuses seen there may describe resources that
    /// existed before the trace began.
    initial_gen: u64,
    gs: HashMap<u64, GState>,
    ps: HashMap<u64, PState>,
    /// Thread states, by slot: the merge looks a cursor's slot up once per generation, not
    /// once per event.
    ms: Vec<MState>,
    m_slots: HashMap<u64, usize>,
    tasks: HashSet<u64>,
    gc_seq: u64,
    gc_state: GcState,
}

impl Default for Ordering {
    fn default() -> Self {
        Ordering {
            initial_gen: 0,
            gs: HashMap::default(),
            ps: HashMap::default(),
            ms: Vec::new(),
            m_slots: HashMap::default(),
            tasks: HashSet::default(),
            gc_seq: 0,
            gc_state: GcState::Undetermined,
        }
    }
}

/// Why an event could not be taken.
pub enum Fail {
    /// The trace contradicts itself.
    Bad(String),
    /// Taking it would pass one of the caller's limits.
    Limit { what: &'static str, limit: usize },
}

impl From<String> for Fail {
    fn from(s: String) -> Self {
        Fail::Bad(s)
    }
}

impl From<&str> for Fail {
    fn from(s: &str) -> Self {
        Fail::Bad(s.to_string())
    }
}

/// The outcome of offering an event: it happened (and the M's context after it), or it must
/// wait for an event on another M.
type Step = Result<Option<Ctx>, Fail>;

impl Ordering {
    /// Goroutines, threads, procs and tasks being tracked: what grows with a hostile trace.
    pub fn resources(&self) -> usize {
        self.gs.len() + self.ps.len() + self.ms.len() + self.tasks.len()
    }

    /// The state slot of thread `m` (`None` for events on no thread).
    pub fn thread_slot(&mut self, m: u64) -> Option<usize> {
        if m == NO_THREAD {
            return None;
        }
        Some(*self.m_slots.entry(m).or_insert_with(|| {
            self.ms.push(NO_M_STATE);
            self.ms.len() - 1
        }))
    }

    /// Thread `m`'s state, if Go would have one.
    fn thread(&mut self, m: u64) -> Option<&mut MState> {
        let slot = *self.m_slots.get(&m)?;
        self.ms.get_mut(slot).filter(|s| s.seen)
    }

    /// Offers `ev`, read from the stream of thread `m` (whose slot is `slot`) in generation
    /// `g`. On `Ok(true)` the event (and any it stands for) was emitted into `sink`; on
    /// `Ok(false)` it cannot happen yet.
    pub fn advance(
        &mut self,
        ev: &Ev,
        m: u64,
        slot: Option<usize>,
        g: &Generation,
        sink: &mut Sink,
    ) -> Result<bool, TraceError> {
        if self.initial_gen == 0 {
            self.initial_gen = g.gen;
        }
        let cur = match slot.and_then(|s| self.ms.get_mut(s)) {
            Some(ms) => {
                ms.seen = true;
                Ctx { m, p: ms.p, g: ms.g }
            }
            None => Ctx {
                m: NO_THREAD,
                p: NO_PROC,
                g: NO_GOROUTINE,
            },
        };
        let step = self.dispatch(ev, cur, g, sink);
        match step {
            Ok(Some(new)) => {
                if let Some(ms) = slot.and_then(|s| self.ms.get_mut(s)) {
                    ms.g = new.g;
                    ms.p = new.p;
                }
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(Fail::Bad(what)) => Err(TraceError::Malformed {
                offset: ev.offset,
                what: format!("{} event: {what}", name(ev.typ)),
            }),
            Err(Fail::Limit { what, limit }) => Err(TraceError::TooLarge {
                what,
                limit: limit as u64,
            }),
        }
    }

    fn dispatch(&mut self, ev: &Ev, cur: Ctx, g: &Generation, sink: &mut Sink) -> Step {
        let gen = g.gen;
        let a = &ev.args;
        match ev.typ {
            EV_PROCS_CHANGE | EV_GO_LABEL | EV_USER_LOG => {
                check_user(cur)?;
                self.done(sink, ev, cur)
            }
            EV_PROC_START => self.proc_start(ev, cur, gen, sink),
            EV_PROC_STOP => self.proc_stop(ev, cur, sink),
            EV_PROC_STEAL => self.proc_steal(ev, cur, gen, sink),
            EV_PROC_STATUS => self.proc_status(ev, cur, gen, sink),
            EV_GO_CREATE | EV_GO_CREATE_BLOCKED => {
                check(cur, Must, Must, May)?;
                if let Some(s) = self.gs.get(&cur.g) {
                    if s.status != GO_RUNNING {
                        return Err("creating goroutine is not running".into());
                    }
                }
                if self.gs.contains_key(&a[0]) {
                    return Err(format!("goroutine {} created twice", a[0]).into());
                }
                let status = if ev.typ == EV_GO_CREATE_BLOCKED {
                    GO_WAITING
                } else {
                    GO_RUNNABLE
                };
                self.gs.insert(a[0], GState::new(status, Seq { gen, n: 0 }));
                self.done(sink, ev, cur)
            }
            EV_GO_CREATE_SYSCALL => {
                check(cur, Must, May, MustNot)?;
                if self.gs.contains_key(&a[0]) {
                    return Err(format!("goroutine {} created twice", a[0]).into());
                }
                self.gs.insert(a[0], GState::new(GO_SYSCALL, Seq { gen, n: 0 }));
                sink.emit(ev.time)?;
                Ok(Some(Ctx { g: a[0], ..cur }))
            }
            EV_GO_START => {
                let seq = Seq { gen, n: a[1] };
                match self.gs.get_mut(&a[0]) {
                    Some(s) if s.status == GO_RUNNABLE && seq.follows(s.seq) => {
                        check(cur, Must, Must, MustNot)?;
                        s.status = GO_RUNNING;
                        s.seq = seq;
                    }
                    _ => return Ok(None),
                }
                sink.emit(ev.time)?;
                Ok(Some(Ctx { g: a[0], ..cur }))
            }
            EV_GO_DESTROY | EV_GO_STOP | EV_GO_BLOCK => {
                check_user(cur)?;
                let s = self.running_g(cur)?;
                match ev.typ {
                    EV_GO_STOP => s.status = GO_RUNNABLE,
                    EV_GO_BLOCK => s.status = GO_WAITING,
                    _ => {
                        self.gs.remove(&cur.g);
                    }
                }
                sink.emit(ev.time)?;
                Ok(Some(Ctx {
                    g: NO_GOROUTINE,
                    ..cur
                }))
            }
            EV_GO_DESTROY_SYSCALL => self.go_destroy_syscall(ev, cur, sink),
            EV_GO_UNBLOCK => {
                let seq = Seq { gen, n: a[1] };
                match self.gs.get_mut(&a[0]) {
                    Some(s) if s.status == GO_WAITING && seq.follows(s.seq) => {
                        s.status = GO_RUNNABLE;
                        s.seq = seq;
                    }
                    _ => return Ok(None),
                }
                self.done(sink, ev, cur)
            }
            EV_GO_SWITCH | EV_GO_SWITCH_DESTROY => self.go_switch(ev, cur, gen, sink),
            EV_GO_SYSCALL_BEGIN => {
                check_user(cur)?;
                self.running_g(cur)?.status = GO_SYSCALL;
                let p = self
                    .ps
                    .get_mut(&cur.p)
                    .ok_or_else(|| format!("unknown proc {}", cur.p))?;
                p.status = PROC_SYSCALL;
                let seq = Seq { gen, n: a[0] };
                if !seq.follows(p.seq) {
                    return Err(format!("proc sequence {} does not follow {}", seq.n, p.seq.n).into());
                }
                p.seq = seq;
                self.done(sink, ev, cur)
            }
            EV_GO_SYSCALL_END => {
                check_user(cur)?;
                let s = self.gs.get_mut(&cur.g).ok_or("unknown goroutine")?;
                if s.status != GO_SYSCALL {
                    return Err("goroutine is not in a syscall".into());
                }
                s.status = GO_RUNNING;
                let p = self
                    .ps
                    .get_mut(&cur.p)
                    .ok_or_else(|| format!("unknown proc {}", cur.p))?;
                if p.status != PROC_SYSCALL {
                    return Err(format!("proc {} is not in a syscall", cur.p).into());
                }
                p.status = PROC_RUNNING;
                self.done(sink, ev, cur)
            }
            EV_GO_SYSCALL_END_BLOCKED => {
                // Waits until the P it had in the syscall was stopped or stolen.
                if cur.p != NO_PROC {
                    let p = self
                        .ps
                        .get(&cur.p)
                        .ok_or_else(|| format!("unknown proc {}", cur.p))?;
                    if p.status == PROC_SYSCALL {
                        return Ok(None);
                    }
                }
                check(cur, Must, May, Must)?;
                let s = self.gs.get_mut(&cur.g).ok_or("unknown goroutine")?;
                if s.status != GO_SYSCALL {
                    return Err("goroutine is not in a syscall".into());
                }
                s.status = GO_RUNNABLE;
                sink.emit(ev.time)?;
                Ok(Some(Ctx {
                    g: NO_GOROUTINE,
                    ..cur
                }))
            }
            EV_GO_STATUS | EV_GO_STATUS_STACK => self.go_status(ev, cur, gen, sink),
            EV_STW_BEGIN => {
                check_user(cur)?;
                let reason = g
                    .string(a[0])
                    .ok_or_else(|| format!("unknown string id {} for the reason", a[0]))?;
                let s = self.gs.get_mut(&cur.g).ok_or("unknown goroutine")?;
                if s.stw.iter().any(|&(desc, _)| desc == a[0]) {
                    return Err("stop-the-world already in progress on this goroutine".into());
                }
                if sink.stw.len() >= sink.max_stw {
                    return Err(Fail::Limit {
                        what: "stop-the-world pauses",
                        limit: sink.max_stw,
                    });
                }
                let t = sink.emit(ev.time)?;
                let reason = String::from_utf8_lossy(reason).into_owned();
                s.stw.push((a[0], sink.stw.len()));
                sink.stw.push(Stw {
                    start_ns: t as u64,
                    end_ns: None,
                    gc: reason == "GC mark termination" || reason == "GC sweep termination",
                    reason,
                });
                Ok(Some(cur))
            }
            EV_STW_END => {
                check_user(cur)?;
                let s = self.gs.get_mut(&cur.g).ok_or("unknown goroutine")?;
                if s.stw.is_empty() {
                    return Err("no stop-the-world in progress on this goroutine".into());
                }
                // The first open one, as Go picks it.
                let (_, idx) = s.stw.swap_remove(0);
                let t = sink.emit(ev.time)?;
                if let Some(stw) = sink.stw.get_mut(idx) {
                    stw.end_ns = Some(t as u64);
                }
                Ok(Some(cur))
            }
            EV_GC_ACTIVE => self.gc_active(ev, cur, gen, sink),
            EV_GC_BEGIN => self.gc_begin(ev, cur, sink),
            EV_GC_END => self.gc_end(ev, cur, sink),
            EV_GC_SWEEP_BEGIN | EV_GC_SWEEP_END => {
                check(cur, Must, Must, May)?;
                let p = self.ps.get_mut(&cur.p).ok_or("unknown proc")?;
                let begin = ev.typ == EV_GC_SWEEP_BEGIN;
                if p.sweeping == begin {
                    return Err(if begin {
                        "sweep already in progress"
                    } else {
                        "no sweep in progress"
                    }
                    .into());
                }
                p.sweeping = begin;
                self.done(sink, ev, cur)
            }
            EV_GC_SWEEP_ACTIVE => {
                let first_gen = gen == self.initial_gen;
                let p = self.ps.get_mut(&a[0]).ok_or("unknown proc")?;
                active_range(&mut p.sweeping, first_gen)?;
                self.done(sink, ev, cur)
            }
            EV_GC_MARK_ASSIST_BEGIN | EV_GC_MARK_ASSIST_END => {
                check_user(cur)?;
                let s = self.gs.get_mut(&cur.g).ok_or("unknown goroutine")?;
                let begin = ev.typ == EV_GC_MARK_ASSIST_BEGIN;
                if s.mark_assist == begin {
                    return Err(if begin {
                        "mark assist already in progress"
                    } else {
                        "no mark assist in progress"
                    }
                    .into());
                }
                s.mark_assist = begin;
                self.done(sink, ev, cur)
            }
            EV_GC_MARK_ASSIST_ACTIVE => {
                let first_gen = gen == self.initial_gen;
                let s = self.gs.get_mut(&a[0]).ok_or("unknown goroutine")?;
                active_range(&mut s.mark_assist, first_gen)?;
                self.done(sink, ev, cur)
            }
            EV_HEAP_ALLOC | EV_HEAP_GOAL => {
                check(cur, Must, Must, May)?;
                self.done(sink, ev, cur)
            }
            EV_USER_TASK_BEGIN => {
                if !self.tasks.insert(a[0]) {
                    return Err(format!("task {} begun twice", a[0]).into());
                }
                check_user(cur)?;
                self.done(sink, ev, cur)
            }
            EV_USER_TASK_END => {
                self.tasks.remove(&a[0]);
                check_user(cur)?;
                self.done(sink, ev, cur)
            }
            EV_USER_REGION_BEGIN | EV_USER_REGION_END => {
                check_user(cur)?;
                if !self.gs.contains_key(&cur.g) {
                    return Err("unknown goroutine".into());
                }
                self.done(sink, ev, cur)
            }
            EV_SPAN..=EV_GOROUTINE_STACK_FREE => {
                check(cur, Must, May, May)?;
                self.done(sink, ev, cur)
            }
            _ => Err("not valid in an event batch".into()),
        }
    }
}
