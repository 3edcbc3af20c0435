//! How each event that changes scheduler or GC state is checked against the model and
//! applied: procs, goroutines, GC begin and end.

use super::*;

impl Ordering {
    /// Emits the event itself and leaves the context as it was.
    pub(super) fn done(&self, sink: &mut Sink, ev: &Ev, cur: Ctx) -> Step {
        sink.emit(ev.time)?;
        Ok(Some(cur))
    }

    pub(super) fn running_g(&mut self, cur: Ctx) -> Result<&mut GState, String> {
        let s = self
            .gs
            .get_mut(&cur.g)
            .ok_or_else(|| format!("unknown goroutine {}", cur.g))?;
        if s.status != GO_RUNNING {
            return Err(format!("goroutine {} is not running", cur.g));
        }
        Ok(s)
    }

    pub(super) fn proc_status(&mut self, ev: &Ev, cur: Ctx, gen: u64, sink: &mut Sink) -> Step {
        let (pid, status) = (ev.args[0], ev.args[1]);
        if status >= PROC_STATUS_END {
            return Err(format!("invalid status {status} for proc {pid}").into());
        }
        // A P found abandoned in a syscall while we still have it in one: it is about to be
        // stolen, and Go attributes this event to the M that holds it.
        let mut find_holder = false;
        match self.ps.get_mut(&pid) {
            Some(s) => {
                if status == PROC_SYSCALL_ABANDONED && s.status == PROC_SYSCALL {
                    find_holder = true;
                } else if !(status == PROC_SYSCALL_ABANDONED && s.status == PROC_SYSCALL_ABANDONED)
                    && s.status != status
                {
                    return Err(format!("proc {pid} was {} and now says {status}", s.status).into());
                }
                s.seq = Seq { gen, n: 0 };
            }
            None => {
                self.ps.insert(
                    pid,
                    PState {
                        status,
                        seq: Seq { gen, n: 0 },
                        sweeping: false,
                    },
                );
            }
        }
        let mut new = cur;
        if status == PROC_RUNNING || status == PROC_SYSCALL {
            new.p = pid;
        }
        if find_holder && !self.ms.iter().any(|ms| ms.seen && ms.p == pid) {
            return Err(format!("no thread holds proc {pid}, which is about to be stolen").into());
        }
        sink.emit(ev.time)?;
        Ok(Some(new))
    }

    pub(super) fn proc_start(&mut self, ev: &Ev, cur: Ctx, gen: u64, sink: &mut Sink) -> Step {
        let pid = ev.args[0];
        let seq = Seq { gen, n: ev.args[1] };
        match self.ps.get_mut(&pid) {
            Some(s) if s.status == PROC_IDLE && seq.follows(s.seq) && cur.p == NO_PROC => {
                check(cur, Must, MustNot, May)?;
                s.status = PROC_RUNNING;
                s.seq = seq;
            }
            _ => return Ok(None),
        }
        sink.emit(ev.time)?;
        Ok(Some(Ctx { p: pid, ..cur }))
    }

    pub(super) fn proc_stop(&mut self, ev: &Ev, cur: Ctx, sink: &mut Sink) -> Step {
        let s = self
            .ps
            .get_mut(&cur.p)
            .ok_or_else(|| format!("unknown proc {}", cur.p))?;
        if s.status != PROC_RUNNING && s.status != PROC_SYSCALL {
            return Err(format!("proc {} is not running", cur.p).into());
        }
        check(cur, Must, Must, May)?;
        s.status = PROC_IDLE;
        sink.emit(ev.time)?;
        Ok(Some(Ctx { p: NO_PROC, ..cur }))
    }

    pub(super) fn proc_steal(&mut self, ev: &Ev, cur: Ctx, gen: u64, sink: &mut Sink) -> Step {
        let (pid, from) = (ev.args[0], ev.args[2]);
        let seq = Seq { gen, n: ev.args[1] };
        let old = match self.ps.get_mut(&pid) {
            Some(s)
                if (s.status == PROC_SYSCALL || s.status == PROC_SYSCALL_ABANDONED) && seq.follows(s.seq) =>
            {
                check(cur, Must, May, May)?;
                let old = s.status;
                s.status = PROC_IDLE;
                s.seq = seq;
                old
            }
            _ => return Ok(None),
        };
        // The thread that had it is unknown: nothing to take it from.
        if old == PROC_SYSCALL_ABANDONED {
            sink.emit(ev.time)?;
            return Ok(Some(cur));
        }
        if from == cur.m {
            if cur.p != pid {
                return Err(format!("self-steal of proc {pid} while holding proc {}", cur.p).into());
            }
            sink.emit(ev.time)?;
            return Ok(Some(Ctx { p: NO_PROC, ..cur }));
        }
        let victim = self
            .thread(from)
            .ok_or_else(|| format!("proc stolen from unknown thread {from}"))?;
        if victim.p != pid {
            return Err(format!(
                "proc {pid} stolen from thread {from}, which has proc {}",
                victim.p
            )
            .into());
        }
        victim.p = NO_PROC;
        sink.emit(ev.time)?;
        Ok(Some(cur))
    }

    pub(super) fn go_status(&mut self, ev: &Ev, cur: Ctx, gen: u64, sink: &mut Sink) -> Step {
        let (gid, mid, status) = (ev.args[0], ev.args[1], ev.args[2]);
        if status >= GO_STATUS_END {
            return Err(format!("invalid status {status} for goroutine {gid}").into());
        }
        match self.gs.get_mut(&gid) {
            Some(s) => {
                if s.status != status {
                    return Err(format!("goroutine {gid} was {} and now says {status}", s.status).into());
                }
                s.seq = Seq { gen, n: 0 };
            }
            None if gen == self.initial_gen => {
                self.gs.insert(gid, GState::new(status, Seq { gen, n: 0 }));
            }
            None => return Err(format!("status for goroutine {gid}, new after the first generation").into()),
        }
        let mut new = cur;
        match status {
            GO_RUNNING => new.g = gid,
            GO_SYSCALL => {
                if mid == NO_THREAD {
                    return Err(format!("goroutine {gid} in a syscall without a thread").into());
                }
                if mid == cur.m {
                    if gen != self.initial_gen && cur.g != gid {
                        return Err(format!("syscalling goroutine {gid} is not on its thread").into());
                    }
                    new.g = gid;
                } else {
                    // A goroutine sitting in a syscall on another thread the whole time.
                    match self.thread(mid) {
                        Some(ms) if ms.g != gid => {
                            return Err(format!("thread {mid} has goroutine {}, not {gid}", ms.g).into())
                        }
                        Some(_) => {}
                        None => {
                            let slot = self.thread_slot(mid);
                            if let Some(m) = slot.and_then(|s| self.ms.get_mut(s)) {
                                *m = MState {
                                    g: gid,
                                    p: NO_PROC,
                                    seen: true,
                                };
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        sink.emit_status(ev.time)?;
        Ok(Some(new))
    }

    pub(super) fn go_destroy_syscall(&mut self, ev: &Ev, cur: Ctx, sink: &mut Sink) -> Step {
        check(cur, Must, May, Must)?;
        match self.gs.get(&cur.g) {
            Some(s) if s.status == GO_SYSCALL => {}
            Some(_) => return Err("goroutine is not in a syscall".into()),
            None => return Err("unknown goroutine".into()),
        }
        self.gs.remove(&cur.g);
        let mut new = Ctx {
            g: NO_GOROUTINE,
            ..cur
        };
        if cur.p != NO_PROC {
            let p = self.ps.get_mut(&cur.p).ok_or("unknown proc")?;
            if p.status != PROC_SYSCALL {
                return Err(format!("proc {} is not in a syscall", cur.p).into());
            }
            // The thread may be reused by the OS; the P is treated as lost by this one,
            // which Go reports as an extra self-steal event first.
            p.status = PROC_SYSCALL_ABANDONED;
            new.p = NO_PROC;
            sink.emit(ev.time)?;
        }
        sink.emit(ev.time)?;
        Ok(Some(new))
    }

    pub(super) fn go_switch(&mut self, ev: &Ev, cur: Ctx, gen: u64, sink: &mut Sink) -> Step {
        check_user(cur)?;
        self.running_g(cur)?;
        let next = ev.args[0];
        let seq = Seq { gen, n: ev.args[1] };
        match self.gs.get_mut(&next) {
            Some(s) if s.status == GO_WAITING && seq.follows(s.seq) => {
                s.status = GO_RUNNING;
                s.seq = seq;
            }
            _ => return Ok(None),
        }
        if ev.typ == EV_GO_SWITCH {
            if let Some(s) = self.gs.get_mut(&cur.g) {
                s.status = GO_WAITING;
            }
        } else {
            self.gs.remove(&cur.g);
        }
        // Go reports three events: the switch (an unblock of the next goroutine), a block or
        // destroy of this one, and the next one starting.
        for _ in 0..3 {
            sink.emit(ev.time)?;
        }
        Ok(Some(Ctx { g: next, ..cur }))
    }

    pub(super) fn gc_active(&mut self, ev: &Ev, cur: Ctx, gen: u64, sink: &mut Sink) -> Step {
        let seq = ev.args[0];
        if gen == self.initial_gen {
            if self.gc_state != GcState::Undetermined {
                return Err("GC active after other GC events in the first generation".into());
            }
        } else {
            if seq != self.gc_seq.wrapping_add(1) {
                return Ok(None);
            }
            if self.gc_state != GcState::Running {
                return Err("GC active while no GC runs".into());
            }
            check_user(cur)?;
        }
        self.gc_seq = seq;
        self.gc_state = GcState::Running;
        sink.emit(ev.time)?;
        // A cycle that began before the trace did.
        if sink.open_gc.is_none() {
            open_gc(sink, seq, None)?;
        }
        Ok(Some(cur))
    }

    pub(super) fn gc_begin(&mut self, ev: &Ev, cur: Ctx, sink: &mut Sink) -> Step {
        let seq = ev.args[0];
        if self.gc_state != GcState::Undetermined {
            if seq != self.gc_seq.wrapping_add(1) {
                return Ok(None);
            }
            if self.gc_state == GcState::Running {
                return Err("GC begins while one runs".into());
            }
            check_user(cur)?;
        }
        self.gc_seq = seq;
        self.gc_state = GcState::Running;
        let t = sink.emit(ev.time)?;
        open_gc(sink, seq, Some(t as u64))?;
        Ok(Some(cur))
    }

    pub(super) fn gc_end(&mut self, ev: &Ev, cur: Ctx, sink: &mut Sink) -> Step {
        let seq = ev.args[0];
        if seq != self.gc_seq.wrapping_add(1) {
            return Ok(None);
        }
        match self.gc_state {
            GcState::NotRunning => return Err("GC ends while none runs".into()),
            GcState::Undetermined => return Err("GC ends before any GC began".into()),
            GcState::Running => {}
        }
        self.gc_seq = seq;
        self.gc_state = GcState::NotRunning;
        check_user(cur)?;
        let t = sink.emit(ev.time)?;
        if let Some(i) = sink.open_gc.take() {
            if let Some(c) = sink.gc.get_mut(i) {
                c.end_ns = Some(t as u64);
            }
        }
        Ok(Some(cur))
    }
}

pub(super) fn open_gc(sink: &mut Sink, seq: u64, start_ns: Option<u64>) -> Result<(), Fail> {
    if sink.gc.len() >= sink.max_gc {
        return Err(Fail::Limit {
            what: "GC cycles",
            limit: sink.max_gc,
        });
    }
    // A begin while one is open cannot pass the GC state checks, but stay safe.
    sink.open_gc = Some(sink.gc.len());
    sink.gc.push(GcCycle {
        seq,
        start_ns,
        end_ns: None,
    });
    Ok(())
}

/// A range said to be in progress at a generation's start: in the first generation it opens
/// the range, later it must already be open.
pub(super) fn active_range(open: &mut bool, first_gen: bool) -> Result<(), String> {
    if first_gen {
        if *open {
            return Err("range already active in the first generation".into());
        }
        *open = true;
    } else if !*open {
        return Err("range said active was never begun".into());
    }
    Ok(())
}
