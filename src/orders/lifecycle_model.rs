//! A model check of a confirmation token's life (issue 24): whatever any clock says, a token
//! drives at most one POST that 1NCE may act on, and none after the person said no.
//!
//! Tests cover the paths someone thought of; here [`stateright`] walks every interleaving of a
//! small world, breadth first, and checks the promise in each state it reaches.
//!
//! **What it models.** The rules of the issue 24 design, each action named after the function of
//! [`super::tokens`] or [`super::single_use`] it stands for:
//! - *issue* ([`Confirmations::issue`](super::tokens::Confirmations::issue)): a process signs a
//!   token whose issue time and expiry `E = issued + TTL` are read on its own, possibly wrong,
//!   clock (the preview's own clock check can pass just before the clock jumps);
//! - *redeem* ([`Confirmations::redeem`](super::tokens::Confirmations::redeem) up to its claim):
//!   [`Confirmations::check`](super::tokens::Confirmations::check) by the redeemer's clock (no
//!   record; not from the future; not expired), then
//!   [`SingleUse::claim`](super::single_use::SingleUse::claim), an atomic insert-if-absent of a
//!   `posting` record that carries `E`;
//! - *judge the claim*: the rules `redeem` applies after a won claim, by the swept-through mark
//!   `M` and the store clock `S` read after the claim (`E <= M`; clock skew; `S >= E`; `E` too
//!   far ahead). If they pass, the POST goes out; if not, *release refused* gives the claim back
//!   ([`SingleUse::release`](super::single_use::SingleUse::release));
//! - *answer*: 1NCE's answer and what the redeemer records of it: created
//!   ([`Redemption::placed`](super::tokens::Redemption::placed), a
//!   [`SingleUse::settle`](super::single_use::SingleUse::settle)), unknown
//!   ([`Redemption::unknown`](super::tokens::Redemption::unknown), or a redemption dropped
//!   unsettled), certainly not processed
//!   ([`Redemption::release`](super::tokens::Redemption::release), the one release of a POSTed
//!   token, after which it may be redeemed again). A process may also die mid-POST and record
//!   nothing: it then never moves again;
//! - *decline* ([`Confirmations::end_unapproved`](super::tokens::Confirmations::end_unapproved)):
//!   the person said no, an insert-if-absent of a `not_approved` record;
//! - *sweep* ([`SingleUse::sweep`](super::single_use::SingleUse::sweep)): under the store's lock,
//!   `M = max(M, E)` over the records it is about to remove, persisted; then the deletion of each
//!   record whose `E <= M`, each deletion its own step, interleaved with everything else. The
//!   code picks the records by the store's clock (`E < S - RETAIN`); the model lets the sweeper
//!   pick them by its own clock, a stronger adversary, since single use must not rest on any
//!   clock.
//!
//! **The abstraction.** Time is in coarse whole units: SKEW = 0 units (well under one), TTL = 1
//! = LONGEST_TTL, RETAIN = 2, ordered as the real 60 s, 24 h and 7 days are. Real time `now`
//! only moves forward, one unit a step, up to a small horizon; every clock reads
//! `now + offset`: each process's own clock, and the store's clock (a file's mtime, or the
//! database's `now()`). Offsets start at 0 and may jump, forward or back, to anything within a
//! bound of 4 units (wider than TTL + RETAIN), twice in a run, at any point: between an issue and
//! a redeem, between a claim and its judgement, in the middle of a POST, between a sweep and its
//! deletions. Real time runs from 0 to 2. Two processes (three in a second, smaller world: offsets
//! within 3, real time 0 to 1) share one store and issue, redeem, decline and sweep one token, in
//! any interleaving; claims are the only atomic read-modify-writes, as in the real store. The
//! check and the claim are one step, as `redeem` runs them back to back and only the rules after
//! the claim decide; those rules are a step of their own. One token is enough: tokens meet only
//! through the mark, and any process may sweep at any time here. (Two tokens multiply the states
//! thirtyfold, past what a test may take.)
//! Nothing is fair, so a process may stop forever at any point (a crash). A record holds the
//! token's state and expiry (and, for the old rule, when it was written); the mark is a number
//! in the store. What the real code checks that has nothing to do with time (signature, session,
//! person, order, price) is left out: a token here is always genuine and for the right order.
//!
//! Ghost fields, which the code does not have, count what happened: `live_posts` are the POSTs
//! 1NCE may have acted on (in flight, answered created or unknown); a POST answered "certainly
//! not processed" leaves that count when its claim is released, since a release reopens the token
//! by design.
//!
//! **The properties.** `always`: at most one live POST per token; no POST after a decline won.
//! `sometimes`, so that the model is not vacuous: a token is posted; it is posted again after
//! proof that nothing was processed; a sweep deletes a record; the mark refuses a claim of a
//! token whose record a sweep deleted.
//!
//! **The mutants.** Each puts back one old rule or drops one safeguard, and the checker must then
//! find a second POST: [`Rules::Old`] (the sweep by the sweeper's clock and the record's age;
//! expiry judged only by local clocks), [`Rules::NoMark`] (no mark, expiry judged by the store's
//! clock alone: a store clock that jumps forward, sweeps, and jumps back lets a token post twice),
//! [`Rules::UnlockedMark`] (the mark read and written by two sweeps without the lock: one sweep's
//! stale write lowers it).

use std::fmt::{self, Write as _};
use std::time::Instant;

use stateright::{Checker, HasDiscoveries, Model, Path, Property};

/// A time in coarse units.
type Time = i8;

/// The most processes and tokens a world may have (arrays, so that a state copies without
/// allocating).
const MAX_PROCESSES: usize = 3;
const MAX_TOKENS: usize = 2;

/// Which rules the store and the processes follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rules {
    /// Issue 24's design: the sweep, by any clock (here the sweeper's own), first raises the
    /// persisted mark `M` to the highest expiry it is about to delete, under the lock; a won
    /// claim is refused if `E <= M`, and also when the clocks disagree or the store's clock says
    /// the token expired. The single use rests on no clock.
    New,
    /// The new rules without the mark: the claim refuses `S >= E` by the store clock alone, and
    /// the sweep deletes records with `E < S - RETAIN` by the store clock it reads.
    NoMark,
    /// The new rules, but the sweep reads the mark in one step and writes `max(M, E)` back in a
    /// later one, without the lock (or a `SELECT` then an `UPDATE`): two sweeps may interleave,
    /// and the later write wins.
    UnlockedMark,
    /// The rules before issue 24: expiry judged only by the redeemer's local clock, nothing
    /// checked after a won claim, and the sweep deletes records older than `TTL + RETAIN` by the
    /// sweeper's local clock (`forget_before(now - (ttl + REMEMBER_FOR))` on every issue), a
    /// record's age counted from its file's mtime.
    Old,
}

/// The world's sizes and the protocol's durations.
#[derive(Clone, Debug)]
struct Lifecycle {
    rules: Rules,
    processes: usize,
    tokens: usize,
    /// SKEW: how far a process's clock may be from the store's.
    skew: Time,
    /// The TTL every issuer signs with.
    ttl: Time,
    /// LONGEST_TTL: the cap of the TTL, for "from the future".
    longest_ttl: Time,
    /// RETAIN: how long past its expiry a token's record is kept.
    retain: Time,
    /// How far from real time any clock may be, either way.
    max_offset: Time,
    /// Real time runs from 0 up to this.
    horizon: Time,
    /// How many clock jumps one run may take, all clocks together.
    jumps: u8,
}

/// One state of the world.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct State {
    /// Real time, which no one reads directly.
    now: Time,
    /// The store clock reads `now + store_offset`.
    store_offset: Time,
    /// Process `p`'s clock reads `now + offsets[p]`; slots past `processes` stay unused.
    offsets: [Time; MAX_PROCESSES],
    jumps_left: u8,
    /// M: the highest expiry a sweep forgot. It starts below every expiry, which stands for "no
    /// sweep yet".
    mark: Time,
    tokens: [Token; MAX_TOKENS],
    procs: [Proc; MAX_PROCESSES],
    /// [`Rules::UnlockedMark`] only: the mark a process's sweep will write back.
    sweeping: [Option<Time>; MAX_PROCESSES],
    /// Ghost: a won claim of a token whose record a sweep deleted was refused because `E <= M`.
    mark_refused: bool,
}

/// A token, its record in the store and ghost counts of what happened to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Token {
    /// What the token's signature carries, by its issuer's clock; `None` until issued.
    signed: Option<Signed>,
    /// The store's record of the token (one per token id).
    record: Option<Record>,
    /// Ghost: POSTs 1NCE may have acted on (in flight, answered created or unknown).
    live_posts: u8,
    /// Ghost: POSTs of any outcome, counted up to 2.
    posts: u8,
    /// Ghost: a decline won its claim.
    declined: bool,
    /// Ghost: a POST went out after a decline won.
    posted_after_no: bool,
    /// Ghost: a sweep deleted one of its records.
    swept: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Signed {
    issued_at: Time,
    expires: Time,
}

/// A record of [`super::single_use::Use`], reduced to what the rules read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Record {
    state: Recorded,
    /// The token's signed expiry, which the new rules write in every record.
    expires: Time,
    /// When the record was last written, by the store's clock (a marker file's mtime). Only the
    /// old rule reads it; under the others it stays 0, which keeps the state space small.
    at: Time,
}

/// [`super::single_use::UseState`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Recorded {
    Posting,
    Placed,
    Unknown,
    NotApproved,
}

/// What a process is doing, and with which token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Proc {
    Idle,
    /// The claim was won; the rules after the claim come next.
    Claimed(usize),
    /// The rules after the claim refused; the claim is given back next.
    Refused(usize),
    /// The POST went out; 1NCE's answer comes next.
    Posting(usize),
}

/// 1NCE's answer to a POST, as [`super::post_answer`] classifies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum PostReply {
    /// Created: settled as placed.
    Created,
    /// Whether an order was created is unknown (or the redemption was dropped): settled unknown.
    Unknown,
    /// Certainly not processed: the claim is released and the token may be redeemed again.
    NotProcessed,
}

/// One step of the world.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Action {
    /// Time passes: every clock advances one unit.
    Tick,
    /// Process `.0`'s clock jumps: its offset becomes `.1`.
    ClockJumps(usize, Time),
    /// The store's clock jumps: its offset becomes the given one.
    StoreClockJumps(Time),
    /// `Confirmations::issue`: process `by` signs `token` by its own clock.
    Issue { by: usize, token: usize },
    /// `Confirmations::redeem` up to its claim: `Confirmations::check` by the redeemer's clock,
    /// then `SingleUse::claim` of a posting record. Offered only when the check passes and the
    /// claim wins: a refused check or a lost claim changes nothing.
    Redeem { by: usize, token: usize },
    /// `Confirmations::redeem` after a won claim: the rules by the mark and the store clock,
    /// then the POST, or a refusal.
    JudgeClaim(usize),
    /// `SingleUse::release` of a claim the rules refused.
    ReleaseRefused(usize),
    /// 1NCE answers process `by`'s POST and the process records it: `Redemption::placed`,
    /// `Redemption::unknown` (or its `Drop`), `Redemption::release`. A settle over a missing
    /// record writes one, as a marker file renamed over does.
    Answer { by: usize, answer: PostReply },
    /// The same answer as settled by the PostgreSQL table, whose `UPDATE` of a missing row
    /// writes nothing (offered only when the record is missing).
    AnswerOnMissingRow { by: usize, answer: PostReply },
    /// `Confirmations::end_unapproved`: the person said no to token `.0`.
    Decline(usize),
    /// The sweep by process `.0`. New rules: `M = max(M, E)` over the records it picks,
    /// persisted, under the lock. No mark: deletes the records with `E < S - RETAIN`. Unlocked
    /// mark: reads `M` and picks. Old: `SingleUse::forget_before` by the sweeper's local clock.
    Sweep(usize),
    /// Unlocked mark: process `.0`'s sweep writes the mark it computed, then deletes by it.
    SweepWritesMark(usize),
    /// New rules: the sweep deletes the record of token `.0`, whose `E <= M`.
    SweepDeletes(usize),
}

const AT_MOST_ONE_POST: &str = "at most one POST per token that 1NCE may act on";
const NO_POST_AFTER_NO: &str = "no POST after the person's no";
const POSTED: &str = "a token is posted";
const POSTED_AGAIN: &str = "a token is posted again after proof that nothing was processed";
const SWEPT: &str = "a sweep deletes a record";
const MARK_REFUSED: &str = "a claim of a token a sweep forgot is refused for that";

impl Lifecycle {
    /// Issue 24's design in a world of two processes, one token and two clock jumps of up to
    /// four units, wider than TTL + RETAIN.
    fn world() -> Lifecycle {
        Lifecycle {
            rules: Rules::New,
            processes: 2,
            tokens: 1,
            skew: 0,
            ttl: 1,
            longest_ttl: 1,
            retain: 2,
            max_offset: 4,
            horizon: 2,
            jumps: 2,
        }
    }

    fn with_rules(self, rules: Rules) -> Lifecycle {
        Lifecycle { rules, ..self }
    }

    fn store_clock(&self, s: &State) -> Time {
        s.now + s.store_offset
    }

    fn local_clock(&self, s: &State, p: usize) -> Time {
        s.now + s.offsets[p]
    }

    /// What a record written now carries as its time (only the old rule reads it).
    fn stamp(&self, s: &State) -> Time {
        match self.rules {
            Rules::Old => self.store_clock(s),
            Rules::New | Rules::NoMark | Rules::UnlockedMark => 0,
        }
    }

    /// `Confirmations::check`: would process `p` let token `t` go on to its claim right now?
    fn check_passes(&self, s: &State, p: usize, t: usize) -> bool {
        let token = &s.tokens[t];
        let Some(signed) = token.signed else {
            return false;
        };
        if token.record.is_some() {
            return false;
        }
        let local = self.local_clock(s, p);
        match self.rules {
            Rules::Old => local < signed.expires,
            Rules::New | Rules::NoMark | Rules::UnlockedMark => {
                signed.issued_at <= local + self.skew
                    && signed.expires - local <= self.longest_ttl + self.skew
                    && local < signed.expires
            }
        }
    }

    /// The rules `Confirmations::redeem` applies after a won claim, by the mark and the store
    /// clock read after the claim. `Err(true)` when the mark refused.
    fn judge_claim(&self, s: &State, p: usize, t: usize) -> Result<(), bool> {
        let Some(signed) = s.tokens[t].signed else {
            return Err(false);
        };
        let store = self.store_clock(s);
        let skewed = (self.local_clock(s, p) - store).abs() > self.skew;
        let expired = store >= signed.expires;
        let from_the_future = signed.expires - store > self.longest_ttl + self.skew;
        match self.rules {
            Rules::Old => Ok(()),
            Rules::New | Rules::UnlockedMark if signed.expires <= s.mark => Err(true),
            Rules::New | Rules::UnlockedMark | Rules::NoMark
                if skewed || expired || from_the_future =>
            {
                Err(false)
            }
            Rules::New | Rules::UnlockedMark | Rules::NoMark => Ok(()),
        }
    }

    /// Whether the sweep of [`Rules::NoMark`] or [`Rules::Old`], run by `p` now, deletes
    /// `record`.
    fn sweeps_at_once(&self, s: &State, p: usize, record: &Record) -> bool {
        match self.rules {
            Rules::New | Rules::UnlockedMark => false,
            Rules::NoMark => record.expires < self.store_clock(s) - self.retain,
            Rules::Old => self.local_clock(s, p) - record.at > self.ttl + self.retain,
        }
    }

    /// [`Rules::New`] and [`Rules::UnlockedMark`]: whether `p`'s sweep, by its own clock, picks
    /// `record` (and so raises the mark to its expiry first).
    fn picks(&self, s: &State, p: usize, record: &Record) -> bool {
        record.expires < self.local_clock(s, p) - self.retain && record.expires > s.mark
    }

    /// Whether the sweep may delete `record` now, in a step of its own.
    fn deletable(&self, s: &State, record: &Record) -> bool {
        match self.rules {
            Rules::New => record.expires <= s.mark,
            Rules::NoMark | Rules::UnlockedMark | Rules::Old => false,
        }
    }

    /// Whether a sweep by `p` would change anything now (a sweep that does not is left out).
    fn sweep_changes_something(&self, s: &State, p: usize) -> bool {
        match self.rules {
            Rules::New => s.tokens[..self.tokens]
                .iter()
                .filter_map(|t| t.record.as_ref())
                .any(|r| self.picks(s, p, r)),
            Rules::UnlockedMark => s.sweeping[p].is_none(),
            Rules::NoMark | Rules::Old => s.tokens[..self.tokens]
                .iter()
                .filter_map(|t| t.record.as_ref())
                .any(|r| self.sweeps_at_once(s, p, r)),
        }
    }

    /// The clocks, mark, processes and records of `s`, on one line.
    fn describe(&self, s: &State) -> String {
        let mut line = format!("store clock {}", self.store_clock(s));
        if s.mark > -self.max_offset {
            let _ = write!(line, ", mark {}", s.mark);
        }
        for p in 0..self.processes {
            let _ = write!(
                line,
                " | P{p} clock {} {:?}",
                self.local_clock(s, p),
                s.procs[p]
            );
            if let Some(mark) = s.sweeping[p] {
                let _ = write!(line, " sweeping to mark {mark}");
            }
        }
        for (t, token) in s.tokens[..self.tokens].iter().enumerate() {
            let _ = write!(line, " | T{t}");
            if let Some(signed) = token.signed {
                let _ = write!(line, " E {}", signed.expires);
            }
            match token.record {
                Some(r) => {
                    let _ = write!(line, ", record {:?}", r.state);
                }
                None => line.push_str(", no record"),
            }
            let _ = write!(line, ", live POSTs {}", token.live_posts);
        }
        let _ = write!(line, " | real time {}", s.now);
        line
    }
}

impl Model for Lifecycle {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let token = Token {
            signed: None,
            record: None,
            live_posts: 0,
            posts: 0,
            declined: false,
            posted_after_no: false,
            swept: false,
        };
        vec![State {
            now: 0,
            store_offset: 0,
            offsets: [0; MAX_PROCESSES],
            jumps_left: self.jumps,
            mark: -self.max_offset,
            tokens: [token; MAX_TOKENS],
            procs: [Proc::Idle; MAX_PROCESSES],
            sweeping: [None; MAX_PROCESSES],
            mark_refused: false,
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        if s.now < self.horizon {
            actions.push(Action::Tick);
        }
        if s.jumps_left > 0 {
            for p in 0..self.processes {
                for to in -self.max_offset..=self.max_offset {
                    if to != s.offsets[p] {
                        actions.push(Action::ClockJumps(p, to));
                    }
                }
            }
            for to in -self.max_offset..=self.max_offset {
                if to != s.store_offset {
                    actions.push(Action::StoreClockJumps(to));
                }
            }
        }
        for (t, token) in s.tokens[..self.tokens].iter().enumerate() {
            if token.signed.is_none() {
                for by in 0..self.processes {
                    actions.push(Action::Issue { by, token: t });
                }
                continue;
            }
            if token.record.is_none() {
                actions.push(Action::Decline(t));
            }
            if token.record.is_some_and(|r| self.deletable(s, &r)) {
                actions.push(Action::SweepDeletes(t));
            }
        }
        for p in 0..self.processes {
            match s.procs[p] {
                Proc::Idle => {
                    for t in 0..self.tokens {
                        if self.check_passes(s, p, t) {
                            actions.push(Action::Redeem { by: p, token: t });
                        }
                    }
                }
                Proc::Claimed(_) => actions.push(Action::JudgeClaim(p)),
                Proc::Refused(_) => actions.push(Action::ReleaseRefused(p)),
                Proc::Posting(t) => {
                    for answer in [
                        PostReply::Created,
                        PostReply::Unknown,
                        PostReply::NotProcessed,
                    ] {
                        actions.push(Action::Answer { by: p, answer });
                    }
                    if s.tokens[t].record.is_none() {
                        for answer in [PostReply::Created, PostReply::Unknown] {
                            actions.push(Action::AnswerOnMissingRow { by: p, answer });
                        }
                    }
                }
            }
            if self.sweep_changes_something(s, p) {
                actions.push(Action::Sweep(p));
            }
            if s.sweeping[p].is_some() {
                actions.push(Action::SweepWritesMark(p));
            }
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = *last;
        let stamp = self.stamp(&s);
        match action {
            Action::Tick => s.now += 1,
            Action::ClockJumps(p, to) => {
                s.offsets[p] = to;
                s.jumps_left -= 1;
            }
            Action::StoreClockJumps(to) => {
                s.store_offset = to;
                s.jumps_left -= 1;
            }
            Action::Issue { by, token } => {
                let issued_at = self.local_clock(&s, by);
                s.tokens[token].signed = Some(Signed {
                    issued_at,
                    expires: issued_at + self.ttl,
                });
            }
            Action::Redeem { by, token: t } => {
                let token = &mut s.tokens[t];
                if token.record.is_some() {
                    return None;
                }
                token.record = Some(Record {
                    state: Recorded::Posting,
                    expires: token.signed?.expires,
                    at: stamp,
                });
                s.procs[by] = Proc::Claimed(t);
            }
            Action::JudgeClaim(p) => {
                let Proc::Claimed(t) = s.procs[p] else {
                    return None;
                };
                match self.judge_claim(&s, p, t) {
                    Ok(()) => {
                        // The POST.
                        let token = &mut s.tokens[t];
                        token.live_posts = (token.live_posts + 1).min(3);
                        token.posts = (token.posts + 1).min(2);
                        token.posted_after_no |= token.declined;
                        s.procs[p] = Proc::Posting(t);
                    }
                    Err(by_mark) => {
                        s.mark_refused |= by_mark && s.tokens[t].swept;
                        s.procs[p] = Proc::Refused(t);
                    }
                }
            }
            Action::ReleaseRefused(p) => {
                let Proc::Refused(t) = s.procs[p] else {
                    return None;
                };
                // Deletes whatever record the token has now, as `release` does by id.
                s.tokens[t].record = None;
                s.procs[p] = Proc::Idle;
            }
            Action::Answer { by, answer } => {
                let Proc::Posting(t) = s.procs[by] else {
                    return None;
                };
                let token = &mut s.tokens[t];
                let expires = token.signed?.expires;
                let settled = match answer {
                    PostReply::Created => Some(Recorded::Placed),
                    PostReply::Unknown => Some(Recorded::Unknown),
                    PostReply::NotProcessed => None,
                };
                token.record = settled.map(|state| Record {
                    state,
                    expires,
                    at: stamp,
                });
                if settled.is_none() {
                    token.live_posts = token.live_posts.saturating_sub(1);
                }
                s.procs[by] = Proc::Idle;
            }
            Action::AnswerOnMissingRow { by, .. } => s.procs[by] = Proc::Idle,
            Action::Decline(t) => {
                let token = &mut s.tokens[t];
                if token.record.is_some() {
                    return None;
                }
                token.record = Some(Record {
                    state: Recorded::NotApproved,
                    expires: token.signed?.expires,
                    at: stamp,
                });
                token.declined = true;
            }
            Action::Sweep(p) => match self.rules {
                Rules::New => {
                    for token in &s.tokens[..self.tokens] {
                        if let Some(r) = token.record
                            && self.picks(last, p, &r)
                        {
                            s.mark = s.mark.max(r.expires);
                        }
                    }
                }
                Rules::UnlockedMark => {
                    let mut mark = s.mark;
                    for token in &s.tokens[..self.tokens] {
                        if let Some(r) = token.record
                            && self.picks(last, p, &r)
                        {
                            mark = mark.max(r.expires);
                        }
                    }
                    s.sweeping[p] = Some(mark);
                }
                Rules::NoMark | Rules::Old => {
                    for token in &mut s.tokens[..self.tokens] {
                        if token
                            .record
                            .is_some_and(|r| self.sweeps_at_once(last, p, &r))
                        {
                            token.record = None;
                            token.swept = true;
                        }
                    }
                }
            },
            Action::SweepWritesMark(p) => {
                let mark = s.sweeping[p].take()?;
                s.mark = mark;
                for token in &mut s.tokens[..self.tokens] {
                    if token.record.is_some_and(|r| r.expires <= mark) {
                        token.record = None;
                        token.swept = true;
                    }
                }
            }
            Action::SweepDeletes(t) => {
                s.tokens[t].record = None;
                s.tokens[t].swept = true;
            }
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(AT_MOST_ONE_POST, |_, s: &State| {
                s.tokens.iter().all(|t| t.live_posts <= 1)
            }),
            Property::always(NO_POST_AFTER_NO, |_, s: &State| {
                s.tokens.iter().all(|t| !t.posted_after_no)
            }),
            Property::sometimes(POSTED, |_, s: &State| s.tokens.iter().any(|t| t.posts >= 1)),
            Property::sometimes(POSTED_AGAIN, |_, s: &State| {
                s.tokens.iter().any(|t| t.posts >= 2)
            }),
            Property::sometimes(SWEPT, |_, s: &State| s.tokens.iter().any(|t| t.swept)),
            Property::sometimes(MARK_REFUSED, |_, s: &State| s.mark_refused),
        ]
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Tick => write!(f, "time passes"),
            Action::ClockJumps(p, to) => write!(f, "P{p}'s clock jumps to offset {to:+}"),
            Action::StoreClockJumps(to) => write!(f, "the store's clock jumps to offset {to:+}"),
            Action::Issue { by, token } => write!(f, "P{by} issues T{token}"),
            Action::Redeem { by, token } => {
                write!(
                    f,
                    "P{by} redeems T{token}: its check passes, its claim wins"
                )
            }
            Action::JudgeClaim(p) => write!(f, "P{p} judges its claim (POST if it passes)"),
            Action::ReleaseRefused(p) => write!(f, "P{p} releases its refused claim"),
            Action::Answer { by, answer } => write!(f, "1NCE answers P{by}: {answer:?}"),
            Action::AnswerOnMissingRow { by, answer } => {
                write!(f, "1NCE answers P{by}: {answer:?} (no row to update)")
            }
            Action::Decline(t) => write!(f, "the person declines T{t}"),
            Action::Sweep(p) => write!(f, "P{p} sweeps"),
            Action::SweepWritesMark(p) => write!(f, "P{p}'s sweep writes its mark, deletes"),
            Action::SweepDeletes(t) => write!(f, "the sweep deletes T{t}'s record"),
        }
    }
}

/// A path, one step a line: the action, then the world after it.
fn narrate(model: &Lifecycle, path: Path<State, Action>) -> String {
    let steps = path.into_vec();
    let mut out = format!("    start: {}\n", model.describe(&steps[0].0));
    for (i, pair) in steps.windows(2).enumerate() {
        if let Some(action) = pair[0].1 {
            let _ = writeln!(
                out,
                "{:>3}. {action}\n       -> {}",
                i + 1,
                model.describe(&pair[1].0)
            );
        }
    }
    out
}

/// Checks `model` breadth first until `finish_when` (or every state is seen), and prints the
/// number of states and the time it took.
fn check(model: Lifecycle, finish_when: HasDiscoveries) -> (impl Checker<Lifecycle>, usize) {
    let rules = model.rules;
    let processes = model.processes;
    let start = Instant::now();
    let checker = model.checker().finish_when(finish_when).spawn_bfs().join();
    let elapsed = start.elapsed();
    let states = checker.unique_state_count();
    println!(
        "{rules:?} rules, {processes} processes: {states} distinct states ({} generated) in {elapsed:.2?}",
        checker.state_count(),
    );
    (checker, states)
}

/// Checks that `model` keeps every promise, finds every example, and explores more than
/// `at_least` states.
fn assert_holds(model: Lifecycle, at_least: usize) {
    let (checker, states) = check(model, HasDiscoveries::All);
    assert!(checker.is_done());
    checker.assert_no_discovery(AT_MOST_ONE_POST);
    checker.assert_no_discovery(NO_POST_AFTER_NO);
    for example in [POSTED, POSTED_AGAIN, SWEPT, MARK_REFUSED] {
        let steps = checker.assert_any_discovery(example).into_actions().len();
        println!("example of \"{example}\" found ({steps} steps)");
    }
    assert!(states > at_least, "only {states} states: the world shrank");
}

/// A shortest path (give or take the states BFS checks between two looks) to `property`'s
/// discovery in `model`, printed.
fn first_discovery(model: Lifecycle, property: &'static str) -> Path<State, Action> {
    let rules = model.rules;
    let (checker, _) = check(
        model,
        HasDiscoveries::AnyOf([property].into_iter().collect()),
    );
    let path = checker
        .discovery(property)
        .unwrap_or_else(|| panic!("{rules:?} rules: \"{property}\" not found"));
    println!(
        "{rules:?} rules, a shortest path to \"{property}\":\n{}",
        narrate(checker.model(), path.clone())
    );
    path
}

#[test]
fn new_rules_hold_in_every_reachable_state() {
    assert_holds(Lifecycle::world(), 50_000);
    // What the mark is for: a clock went forward, a sweep deleted a spent token's record, the
    // clock came back, and the next claim is refused.
    first_discovery(Lifecycle::world(), MARK_REFUSED);
}

#[test]
fn new_rules_hold_with_three_processes() {
    // A third process costs states: real time stops at 1 and offsets at 3 units.
    let model = Lifecycle {
        processes: 3,
        max_offset: 3,
        horizon: 1,
        ..Lifecycle::world()
    };
    assert_holds(model, 50_000);
}

/// The actions of a shortest path to a second POST in `model`.
fn double_post(model: Lifecycle) -> Vec<Action> {
    first_discovery(model, AT_MOST_ONE_POST).into_actions()
}

fn count(actions: &[Action], what: fn(&Action) -> bool) -> usize {
    actions.iter().filter(|a| what(a)).count()
}

#[test]
fn the_old_sweep_rule_is_caught() {
    let actions = double_post(Lifecycle::world().with_rules(Rules::Old));
    // The attack: a process whose clock is ahead sweeps a fresh record, and the token is
    // redeemed again.
    assert!(
        count(
            &actions,
            |a| matches!(a, Action::ClockJumps(_, to) if *to > 0)
        ) >= 1
    );
    assert_eq!(count(&actions, |a| matches!(a, Action::Sweep(_))), 1);
    assert_eq!(count(&actions, |a| matches!(a, Action::JudgeClaim(_))), 2);
}

#[test]
fn a_store_clock_that_jumps_back_is_caught_without_the_mark() {
    let actions = double_post(Lifecycle::world().with_rules(Rules::NoMark));
    // The store clock went forward for the sweep, then back for the second claim.
    let jumps: Vec<Time> = actions
        .iter()
        .filter_map(|a| match a {
            Action::StoreClockJumps(to) => Some(*to),
            _ => None,
        })
        .collect();
    assert!(
        matches!(jumps[..], [ahead, behind] if ahead > behind),
        "{jumps:?}"
    );
    assert_eq!(count(&actions, |a| matches!(a, Action::JudgeClaim(_))), 2);
}

#[test]
fn a_mark_raised_without_the_lock_is_caught() {
    let actions = double_post(Lifecycle {
        horizon: 0,
        ..Lifecycle::world().with_rules(Rules::UnlockedMark)
    });
    // Two sweeps interleaved: the one that read the mark before the other wrote it wrote last.
    assert_eq!(count(&actions, |a| matches!(a, Action::Sweep(_))), 2);
    assert_eq!(
        count(&actions, |a| matches!(a, Action::SweepWritesMark(_))),
        2
    );
}
