//! Warp- and block-level synchronisation: resolving `shfl.sync` / `vote.sync` once every lane
//! of their member mask has arrived, and `bar.sync` once every thread of the block has.
//!
//! Threads run until they reach one of these points, so when no thread can run any more, each
//! waiting group is either complete (it is resolved and its threads run on) or can never
//! complete — a barrier some threads skipped by exiting, a shuffle reading a lane that exited
//! or waits elsewhere — which fails the launch with a description instead of hanging.

use super::step::{rd, tid, Env, Err0};
use super::FaultKind;
use crate::ptx::inst::{Inst, Op, Opnd, ShflMode, VoteMode};

/// Scheduling state of one thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum St {
    /// Can run.
    Ready,
    /// Waiting at `bar.sync`.
    Bar,
    /// Waiting at `shfl.sync` / `vote.sync`.
    Warp,
    /// Exited.
    Exited,
}

/// The registers, program counters and states of a block's threads.
pub(crate) struct Threads {
    pub n: usize,
    pub nregs: usize,
    pub regs: Vec<u64>,
    pub pc: Vec<u32>,
    pub state: Vec<St>,
}

/// What [`Threads::barrier`] found.
pub(crate) enum BarOutcome {
    /// Every thread exited: the block is done.
    Done,
    /// A barrier was released; threads can run again.
    Released,
}

/// A fault at thread `t`.
pub(crate) type ThreadErr = (usize, Err0);

fn launch_err(t: usize, msg: String) -> ThreadErr {
    (t, (FaultKind::Launch, msg))
}

impl Threads {
    fn regs_of(&self, t: usize) -> &[u64] {
        &self.regs[t * self.nregs..(t + 1) * self.nregs]
    }

    fn describe(&self, code: &[Inst], env: &Env, t: usize) -> String {
        let [x, y, z] = tid(&env.info, t);
        let at = |pc: u32| code.get(pc as usize).map_or(0, |i| i.line);
        match self.state[t] {
            St::Exited => format!("thread ({x},{y},{z}) has exited"),
            St::Bar => format!(
                "thread ({x},{y},{z}) waits at bar.sync (PTX line {})",
                at(self.pc[t])
            ),
            St::Warp => format!(
                "thread ({x},{y},{z}) waits at another warp-synchronous instruction (PTX line {})",
                at(self.pc[t])
            ),
            St::Ready => format!("thread ({x},{y},{z}) is running"),
        }
    }

    /// Resolves every complete warp-synchronous group; true if any was.
    pub fn resolve_warps(&mut self, code: &[Inst], env: &mut Env) -> Result<bool, ThreadErr> {
        let mut progressed = false;
        for w0 in (0..self.n).step_by(32) {
            let lanes = (self.n - w0).min(32);
            let mut seen: Vec<u32> = Vec::new();
            for l in 0..lanes {
                let t = w0 + l;
                if self.state[t] != St::Warp || seen.contains(&self.pc[t]) {
                    continue;
                }
                let pc = self.pc[t];
                seen.push(pc);
                if self.resolve_group(code, env, w0, lanes, pc)? {
                    progressed = true;
                }
            }
        }
        Ok(progressed)
    }

    /// Resolves the group of warp `w0`'s lanes waiting at `pc`, if it is complete.
    fn resolve_group(
        &mut self,
        code: &[Inst],
        env: &mut Env,
        w0: usize,
        lanes: usize,
        pc: u32,
    ) -> Result<bool, ThreadErr> {
        let inst = &code[pc as usize];
        let mask_op = match inst.op {
            Op::Shfl(_) => &inst.s[3],
            _ => &inst.s[1],
        };
        let mut group = 0u32;
        let mut wanted = 0u32;
        for l in 0..lanes {
            let t = w0 + l;
            if self.state[t] == St::Warp && self.pc[t] == pc {
                group |= 1 << l;
                let m = rd(self.regs_of(t), mask_op, env, t) as u32;
                if m & (1 << l) == 0 {
                    return Err(launch_err(
                        t,
                        format!("warp-synchronous instruction with membermask {m:#010x} that does not include the calling lane {l}"),
                    ));
                }
                wanted |= m;
            }
        }
        for l in 0..lanes {
            let t = w0 + l;
            if wanted & (1 << l) != 0 && group & (1 << l) == 0 && self.state[t] != St::Exited {
                return Ok(false); // still waiting for that lane (or deadlocked: see `barrier`)
            }
        }
        match inst.op {
            Op::Shfl(mode) => self.shuffle(inst, mode, env, w0, lanes, group)?,
            Op::Vote(mode) => self.vote(inst, mode, env, w0, group),
            _ => unreachable!("only shfl/vote wait at warp level"),
        }
        env.c.warp_syncs += 1;
        for l in 0..lanes {
            if group & (1 << l) != 0 {
                self.pc[w0 + l] += 1;
                self.state[w0 + l] = St::Ready;
            }
        }
        Ok(true)
    }

    fn shuffle(
        &mut self,
        inst: &Inst,
        mode: ShflMode,
        env: &Env,
        w0: usize,
        lanes: usize,
        group: u32,
    ) -> Result<(), ThreadErr> {
        let mut out = [(0u64, false); 32];
        for (l, slot) in out.iter_mut().enumerate().take(lanes) {
            if group & (1 << l) == 0 {
                continue;
            }
            let t = w0 + l;
            let r = self.regs_of(t);
            let (b, c) = (
                rd(r, &inst.s[1], env, t) as i64,
                rd(r, &inst.s[2], env, t) as i64,
            );
            let (bval, cval, seg) = (b & 31, c & 31, (c >> 8) & 31);
            let lane = l as i64;
            let max_lane = (lane & seg) | (cval & !seg);
            let min_lane = lane & seg;
            let (j, pval) = match mode {
                ShflMode::Up => (lane - bval, lane - bval >= max_lane),
                ShflMode::Down => (lane + bval, lane + bval <= max_lane),
                ShflMode::Bfly => (lane ^ bval, (lane ^ bval) <= max_lane),
                ShflMode::Idx => {
                    let j = min_lane | (bval & !seg);
                    (j, j <= max_lane)
                }
            };
            let src = if pval { j as usize } else { l };
            if pval && group & (1 << src) == 0 {
                let why = if src >= lanes {
                    format!("does not exist (the block has {} threads)", self.n)
                } else {
                    self.describe_lane(w0 + src)
                };
                return Err(launch_err(
                    t,
                    format!("shfl.sync.{mode:?} reads lane {src}, which {why}").to_lowercase(),
                ));
            }
            *slot = (rd(self.regs_of(w0 + src), &inst.s[0], env, w0 + src), pval);
        }
        for (l, (v, p)) in out.iter().enumerate().take(lanes) {
            if group & (1 << l) != 0 {
                let base = (w0 + l) * self.nregs;
                if let Opnd::Reg(d) = inst.d {
                    self.regs[base + d as usize] = v & 0xFFFF_FFFF;
                }
                if let Opnd::Reg(d) = inst.d2 {
                    self.regs[base + d as usize] = *p as u64;
                }
            }
        }
        Ok(())
    }

    fn describe_lane(&self, t: usize) -> String {
        match self.state[t] {
            St::Exited => "has exited".into(),
            _ => "is not taking part in this shuffle (not in the membermask or elsewhere)".into(),
        }
    }

    fn vote(&mut self, inst: &Inst, mode: VoteMode, env: &Env, w0: usize, group: u32) {
        let mut ballot = 0u32;
        for l in 0..32 {
            if group & (1 << l) != 0 && rd(self.regs_of(w0 + l), &inst.s[0], env, w0 + l) != 0 {
                ballot |= 1 << l;
            }
        }
        let v = match mode {
            VoteMode::Ballot => ballot as u64,
            VoteMode::All => (ballot == group) as u64,
            VoteMode::Any => (ballot != 0) as u64,
            VoteMode::Uni => (ballot == group || ballot == 0) as u64,
        };
        if let Opnd::Reg(d) = inst.d {
            for l in 0..32 {
                if group & (1 << l) != 0 {
                    self.regs[(w0 + l) * self.nregs + d as usize] = v;
                }
            }
        }
    }

    /// Called when no thread can run and no warp group resolves: finishes the block, releases
    /// a complete barrier, or reports why the block can never continue.
    pub fn barrier(&mut self, code: &[Inst], env: &mut Env) -> Result<BarOutcome, ThreadErr> {
        let first = |s: St| self.state.iter().position(|x| *x == s);
        if let Some(t) = first(St::Warp) {
            let inst = &code[self.pc[t] as usize];
            let w0 = t / 32 * 32;
            let others: Vec<String> = (w0..(w0 + 32).min(self.n))
                .filter(|&u| u != t && !(self.state[u] == St::Warp && self.pc[u] == self.pc[t]))
                .filter(|&u| self.state[u] != St::Exited)
                .take(3)
                .map(|u| self.describe(code, env, u))
                .collect();
            return Err(launch_err(
                t,
                format!(
                    "deadlock: {:?} can never complete; lanes of its membermask are elsewhere: {}",
                    inst.op,
                    others.join("; ")
                ),
            ));
        }
        let Some(t) = first(St::Bar) else {
            return Ok(BarOutcome::Done);
        };
        if let Some(e) = first(St::Exited) {
            let arrived = self.state.iter().filter(|s| **s == St::Bar).count();
            return Err(launch_err(
                t,
                format!(
                    "bar.sync reached by {arrived} of the block's {} threads; the others exited \
                     without reaching it (e.g. {}): a barrier in divergent code",
                    self.n,
                    self.describe(code, env, e)
                ),
            ));
        }
        let id_of = |u: usize| {
            let i = &code[self.pc[u] as usize];
            (rd(self.regs_of(u), &i.s[0], env, u), i.s[1])
        };
        let (id, count) = id_of(t);
        if count != Opnd::None {
            let c = rd(self.regs_of(t), &count, env, t) as usize;
            if c != self.n.div_ceil(32) * 32 {
                return Err(launch_err(t, format!("bar.sync with a thread count ({c}) below the block size is not implemented")));
            }
        }
        if let Some(u) = (0..self.n).find(|&u| id_of(u).0 != id) {
            return Err(launch_err(
                u,
                format!(
                    "deadlock: threads wait at different barriers ({id} and {})",
                    id_of(u).0
                ),
            ));
        }
        for u in 0..self.n {
            self.pc[u] += 1;
            self.state[u] = St::Ready;
        }
        env.c.barriers += 1;
        Ok(BarOutcome::Released)
    }
}
