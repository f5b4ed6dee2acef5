//! A linearizability checker: the Wing–Gong–Lowe search (Lowe, "Testing for
//! linearizability", 2017) with the memoization of Knossos and porcupine, run separately on
//! each register (P-compositionality: a history of independent objects is linearizable iff
//! each object's sub-history is; Horn & Kroening, "Faster linearizability checking via
//! P-compositionality", 2015).
//!
//! An operation whose outcome is unknown may take effect at any time after its invocation,
//! or never. As in porcupine, it is given no return event: the search may linearize it
//! anywhere after its call, and one that is never linearized before the last return is
//! linearized at the end, where it changes nothing anyone observed ("never").
//!
//! The search is exponential in the worst case, so it is bounded by [`Limits`]; a search
//! that hits a limit says [`Verdict::Undecided`], never "linearizable".

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::history::{Completion, Invocation, OpRecord, Outcome};

/// A sequential specification: what each operation does to the object's state.
pub trait Model {
    /// The object's state.
    type State: Clone + Eq + Hash + fmt::Debug;
    /// An operation's arguments; equal inputs of unknown outcome are interchangeable.
    type Input: fmt::Debug + PartialEq;
    /// An operation's result.
    type Output: fmt::Debug;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// The state after `input` runs on `state` and returns `output`, or `None` when it
    /// cannot return `output` in `state`.
    ///
    /// # Correctness
    /// With `output` `None` (the outcome is unknown) the step must succeed for every state:
    /// the checker relies on an unknown operation being linearizable anywhere.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
}

/// One operation of a single object's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// The caller's name for it (e.g. [`OpRecord::index`]), used in counterexamples.
    pub id: usize,
    /// Its arguments.
    pub input: I,
    /// Its result, `None` when the outcome is unknown.
    pub output: Option<O>,
    /// When it was invoked (any monotonic unit, e.g. nanoseconds).
    pub call: u64,
    /// When it returned, `None` when the outcome is unknown (it may take effect at any time
    /// after `call`). Must not be before `call`.
    pub ret: Option<u64>,
}

/// Bounds on one search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most search steps (one step tries or undoes one operation).
    pub max_steps: u64,
    /// Most memoized `(linearized set, state)` pairs kept, which bounds memory.
    pub max_cache: usize,
    /// Most wall-clock time.
    pub time: Duration,
}

impl Default for Limits {
    /// 50 million steps, 4 million memoized configurations, 60 seconds.
    fn default() -> Self {
        Limits {
            max_steps: 50_000_000,
            max_cache: 4_000_000,
            time: Duration::from_secs(60),
        }
    }
}

/// Why a history is not linearizable: the longest prefix the search could linearize, and the
/// operation that could not come next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Counterexample<S> {
    /// Ids of the operations of the longest linearizable prefix found, in order.
    pub prefix: Vec<usize>,
    /// The state after that prefix.
    pub state: S,
    /// The operation among the rest that returned first: it had to be linearized before its
    /// return, but no order of the operations concurrent with it allows its result.
    pub stuck: usize,
    /// The other operations that were invoked before `stuck` returned and are not in the
    /// prefix.
    pub concurrent: Vec<usize>,
}

/// The checker's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict<S> {
    /// A linearization exists.
    Linearizable,
    /// None exists.
    NotLinearizable(Counterexample<S>),
    /// The search hit a [`Limits`] bound first.
    Undecided {
        /// Which bound.
        reason: String,
    },
}

impl<S> Verdict<S> {
    /// Whether the verdict is [`Verdict::Linearizable`].
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

/// A verdict and what the search cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult<S> {
    /// The answer.
    pub verdict: Verdict<S>,
    /// Search steps taken.
    pub steps: u64,
    /// Time taken, in milliseconds.
    pub millis: u64,
}

const NIL: usize = usize::MAX;
const HEAD: usize = 0;

/// A call or return event of an operation whose outcome is known.
#[derive(Debug, Clone, Copy)]
struct Entry {
    op: usize,
    is_call: bool,
    time: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BitSet(Vec<u64>);

impl BitSet {
    fn new(n: usize) -> Self {
        BitSet(vec![0; n.div_ceil(64)])
    }
    fn get(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
    fn set(&mut self, i: usize) {
        if let Some(w) = self.0.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }
    fn clear(&mut self, i: usize) {
        if let Some(w) = self.0.get_mut(i / 64) {
            *w &= !(1 << (i % 64));
        }
    }
}

/// A doubly linked list over nodes `1..=len` (node 0 is the head sentinel) from which the
/// search removes nodes and puts them back in reverse order ("dancing links").
struct Links {
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl Links {
    fn new(len: usize) -> Self {
        Links {
            next: (0..=len)
                .map(|n| if n < len { n + 1 } else { NIL })
                .collect(),
            prev: (0..=len).map(|n| if n > 0 { n - 1 } else { NIL }).collect(),
        }
    }

    fn first(&self) -> usize {
        self.next[HEAD]
    }

    fn remove(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn reinsert(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = node;
        if n != NIL {
            self.prev[n] = node;
        }
    }
}

/// The candidate the search tries next.
#[derive(Debug, Clone, Copy)]
enum Cursor {
    /// A node of the list of known-outcome events: a call to try, or the first pending
    /// return, where the known-outcome candidates end.
    Known(usize),
    /// A node of the list of unknown-outcome calls; those invoked after `limit` (the first
    /// pending return) are not candidates.
    Unknown { node: usize, limit: u64 },
}

/// Decides whether `ops`, the complete history of one object, is linearizable with respect
/// to `model`, within `limits`.
///
/// The search is Wing & Gong's with Lowe's memoization: linearize a candidate (an operation
/// invoked before the first pending return), recurse, undo on a dead end. Candidates of
/// known outcome are tried before those of unknown outcome, and an unknown one is skipped
/// (left for later, or never) when
/// - it would not change the state here: linearizing it later, or never, is equivalent;
/// - an unknown operation with an equal input, invoked earlier, is not linearized yet: the
///   two are interchangeable, so only the earliest is tried.
pub fn check<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    limits: Limits,
) -> CheckResult<M::State> {
    let started = Instant::now();
    let mut entries = Vec::with_capacity(2 * ops.len());
    let mut unknown: Vec<usize> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match op.ret {
            Some(ret) => {
                entries.push(Entry {
                    op: i,
                    is_call: true,
                    time: op.call,
                });
                entries.push(Entry {
                    op: i,
                    is_call: false,
                    // A return before the call would be a recording error; keep the interval
                    // non-empty so the operation stays well-formed.
                    time: ret.max(op.call),
                });
            }
            None => unknown.push(i),
        }
    }
    // On equal times calls come first: the operations overlap, which only admits more
    // linearizations (a client's clock readings bracket the real interval anyway).
    entries.sort_by_key(|e| (e.time, !e.is_call));
    unknown.sort_by_key(|&i| (ops[i].call, i));
    let mut ret_node = vec![NIL; ops.len()];
    for (k, e) in entries.iter().enumerate() {
        if !e.is_call {
            ret_node[e.op] = k + 1;
        }
    }
    let mut twin_before = vec![NIL; ops.len()];
    for (k, &i) in unknown.iter().enumerate() {
        if let Some(&j) = unknown[..k]
            .iter()
            .rev()
            .find(|&&j| ops[j].input == ops[i].input)
        {
            twin_before[i] = j;
        }
    }

    let mut known = Links::new(entries.len());
    let mut side = Links::new(unknown.len());
    let mut pending_returns = entries.len() / 2;
    let mut linearized = BitSet::new(ops.len());
    let mut cache: HashSet<(BitSet, M::State)> = HashSet::new();
    // (operation, state before it, where it was found)
    let mut stack: Vec<(usize, M::State, Cursor)> = Vec::new();
    let mut state = model.init();
    let mut best: (Vec<usize>, M::State) = (Vec::new(), state.clone());
    let mut cursor = Cursor::Known(known.first());
    let mut steps: u64 = 0;
    let done = |verdict, steps| CheckResult {
        verdict,
        steps,
        millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    // Bounded by `limits.max_steps`.
    while pending_returns > 0 {
        steps += 1;
        if steps > limits.max_steps {
            let reason = format!("more than {} search steps", limits.max_steps);
            return done(Verdict::Undecided { reason }, steps);
        }
        if steps.is_multiple_of(4096) && started.elapsed() > limits.time {
            let reason = format!("more than {:?}", limits.time);
            return done(Verdict::Undecided { reason }, steps);
        }
        if cache.len() > limits.max_cache {
            let reason = format!("more than {} memoized configurations", limits.max_cache);
            return done(Verdict::Undecided { reason }, steps);
        }
        let (attempt, after_attempt) = match cursor {
            Cursor::Known(node) => {
                if node == NIL {
                    // Unreachable: a pending return is always met before the list ends.
                    let reason = "internal error: ran off the event list".to_string();
                    return done(Verdict::Undecided { reason }, steps);
                }
                let e = entries[node - 1];
                if !e.is_call {
                    cursor = Cursor::Unknown {
                        node: side.first(),
                        limit: e.time,
                    };
                    continue;
                }
                let op = &ops[e.op];
                let after = model.step(&state, &op.input, op.output.as_ref());
                (after.map(|s| (e.op, s)), Cursor::Known(known.next[node]))
            }
            Cursor::Unknown { node, limit } => {
                let candidate = (node != NIL)
                    .then(|| unknown[node - 1])
                    .filter(|&i| ops[i].call <= limit);
                let Some(i) = candidate else {
                    // Every candidate failed here: undo the last linearized operation and
                    // try the candidate after it.
                    let Some((i, before, at)) = stack.pop() else {
                        let (prefix, state) = best;
                        let cx = counterexample(ops, prefix, state);
                        return done(Verdict::NotLinearizable(cx), steps);
                    };
                    linearized.clear(i);
                    state = before;
                    cursor = match at {
                        Cursor::Known(node) => {
                            known.reinsert(ret_node[i]);
                            known.reinsert(node);
                            pending_returns += 1;
                            Cursor::Known(known.next[node])
                        }
                        Cursor::Unknown { node, limit } => {
                            side.reinsert(node);
                            Cursor::Unknown {
                                node: side.next[node],
                                limit,
                            }
                        }
                    };
                    continue;
                };
                let twin_waiting = twin_before[i] != NIL && !linearized.get(twin_before[i]);
                let after = if twin_waiting {
                    None
                } else {
                    model
                        .step(&state, &ops[i].input, None)
                        .filter(|after| *after != state)
                };
                let next = Cursor::Unknown {
                    node: side.next[node],
                    limit,
                };
                (after.map(|s| (i, s)), next)
            }
        };
        if let Some((i, after)) = attempt {
            linearized.set(i);
            if cache.insert((linearized.clone(), after.clone())) {
                stack.push((i, std::mem::replace(&mut state, after), cursor));
                match cursor {
                    Cursor::Known(node) => {
                        known.remove(node);
                        known.remove(ret_node[i]);
                        pending_returns -= 1;
                    }
                    Cursor::Unknown { node, .. } => side.remove(node),
                }
                if stack.len() > best.0.len() {
                    best = (
                        stack.iter().map(|(i, _, _)| ops[*i].id).collect(),
                        state.clone(),
                    );
                }
                cursor = Cursor::Known(known.first());
                continue;
            }
            linearized.clear(i);
        }
        cursor = after_attempt;
    }
    done(Verdict::Linearizable, steps)
}

fn counterexample<I, O, S>(
    ops: &[Operation<I, O>],
    prefix: Vec<usize>,
    state: S,
) -> Counterexample<S> {
    let in_prefix: HashSet<usize> = prefix.iter().copied().collect();
    let rest: Vec<&Operation<I, O>> = ops.iter().filter(|o| !in_prefix.contains(&o.id)).collect();
    let stuck = rest
        .iter()
        .filter_map(|o| o.ret.map(|r| (r, o.id)))
        .min()
        .map(|(r, id)| (id, r));
    let (stuck, stuck_ret) = stuck.unwrap_or((usize::MAX, u64::MAX));
    let concurrent = rest
        .iter()
        .filter(|o| o.id != stuck && o.call <= stuck_ret)
        .map(|o| o.id)
        .collect();
    Counterexample {
        prefix,
        state,
        stuck,
        concurrent,
    }
}

/// A register operation's arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterInput {
    /// Read the value.
    Read,
    /// Set the value.
    Write(i64),
    /// Set the value to `.1` if it is `.0`.
    Cas(i64, i64),
}

/// A register operation's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterOutput {
    /// The value read (`None`: never written).
    Read(Option<i64>),
    /// The write happened.
    Written,
    /// Whether the compare-and-set swapped.
    Cas(bool),
}

/// A read/write/compare-and-set register that starts empty (`None`, no row).
#[derive(Debug, Clone, Copy, Default)]
pub struct RegisterModel;

impl Model for RegisterModel {
    type State = Option<i64>;
    type Input = RegisterInput;
    type Output = RegisterOutput;

    fn init(&self) -> Option<i64> {
        None
    }

    fn step(
        &self,
        state: &Option<i64>,
        input: &RegisterInput,
        output: Option<&RegisterOutput>,
    ) -> Option<Option<i64>> {
        use RegisterInput as I;
        use RegisterOutput as O;
        match (input, output) {
            (I::Read, None) => Some(*state),
            (I::Read, Some(O::Read(v))) => (v == state).then_some(*state),
            (I::Write(v), None | Some(O::Written)) => Some(Some(*v)),
            (I::Cas(from, to), None) => Some(if *state == Some(*from) {
                Some(*to)
            } else {
                *state
            }),
            (I::Cas(from, to), Some(O::Cas(true))) => (*state == Some(*from)).then_some(Some(*to)),
            (I::Cas(from, _), Some(O::Cas(false))) => (*state != Some(*from)).then_some(*state),
            _ => None,
        }
    }
}

/// The verdict on one register of a history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyVerdict {
    /// The register.
    pub key: i64,
    /// Operations checked (failed operations and reads of unknown outcome are left out:
    /// they changed and observed nothing).
    pub ops: usize,
    /// Of those, operations of unknown outcome.
    pub unknown: usize,
    /// The checker's answer; operation ids are [`OpRecord::index`]es.
    pub result: CheckResult<Option<i64>>,
    /// The value that stands for every written value no operation observed (see
    /// [`collapse_unobserved`]), as it may appear in a counterexample's state.
    pub unobserved: Option<i64>,
}

/// The register operations of `history` as checker operations, grouped by register.
///
/// # Errors
/// A description of the first operation whose record makes no sense (an `ok` operation
/// without a matching [`Completion`]).
pub fn register_operations(
    history: &[OpRecord],
) -> Result<BTreeMap<i64, Vec<Operation<RegisterInput, RegisterOutput>>>, String> {
    let mut by_key: BTreeMap<i64, Vec<_>> = BTreeMap::new();
    for r in history {
        let Some(key) = r.invocation.key() else {
            continue;
        };
        let input = match r.invocation {
            Invocation::Read { .. } => RegisterInput::Read,
            Invocation::Write { value, .. } => RegisterInput::Write(value),
            Invocation::Cas { expected, new, .. } => RegisterInput::Cas(expected, new),
            Invocation::Transfer { .. } | Invocation::ReadTotal => continue,
        };
        let (output, ret) = match r.outcome {
            Outcome::Fail => continue,
            // A read of unknown outcome observed nothing.
            Outcome::Unknown if input == RegisterInput::Read => continue,
            Outcome::Unknown => (None, None),
            Outcome::Ok => {
                let out = match (&input, &r.completion) {
                    (RegisterInput::Read, Some(Completion::Value { value })) => {
                        RegisterOutput::Read(*value)
                    }
                    (RegisterInput::Write(_), Some(Completion::Written)) => RegisterOutput::Written,
                    (RegisterInput::Cas(..), Some(Completion::Swapped { swapped })) => {
                        RegisterOutput::Cas(*swapped)
                    }
                    _ => {
                        return Err(format!(
                            "operation {} is ok but its completion {:?} does not fit {:?}",
                            r.index, r.completion, r.invocation
                        ))
                    }
                };
                (Some(out), Some(r.return_ns))
            }
        };
        by_key.entry(key).or_default().push(Operation {
            id: r.index,
            input,
            output,
            call: r.call_ns,
            ret,
        });
    }
    Ok(by_key)
}

/// Checks every register of `history` on its own (P-compositionality), each within
/// `limits`.
///
/// # Errors
/// As [`register_operations`].
pub fn check_registers(history: &[OpRecord], limits: Limits) -> Result<Vec<KeyVerdict>, String> {
    Ok(register_operations(history)?
        .into_iter()
        .map(|(key, mut ops)| {
            let unobserved = collapse_unobserved(&mut ops);
            KeyVerdict {
                key,
                ops: ops.len(),
                unknown: ops.iter().filter(|o| o.output.is_none()).count(),
                result: check(&RegisterModel, &ops, limits),
                unobserved,
            }
        })
        .collect())
}

/// Replaces every value written to a register that no operation observes (no read returned
/// it, no compare-and-set expected it) by one value that appears nowhere else.
///
/// The register model only ever compares the state with observed values, so two states
/// that differ only in an unobserved value allow exactly the same futures: the history is
/// linearizable iff the collapsed one is. The collapse lets the search's memoization merge
/// such states, and makes writes of unknown outcome with unobserved values interchangeable.
///
/// Returns the value that now stands for the unobserved ones (`None` when there are too
/// many distinct values to find one, which cannot happen with fewer than 2^64 operations).
pub fn collapse_unobserved(ops: &mut [Operation<RegisterInput, RegisterOutput>]) -> Option<i64> {
    let mut observed = HashSet::new();
    let mut all = HashSet::new();
    for op in ops.iter() {
        match (op.input, op.output) {
            (_, Some(RegisterOutput::Read(Some(v)))) => {
                observed.insert(v);
                all.insert(v);
            }
            (RegisterInput::Cas(expected, new), _) => {
                observed.insert(expected);
                all.extend([expected, new]);
            }
            (RegisterInput::Write(v), _) => {
                all.insert(v);
            }
            _ => {}
        }
    }
    // At most all.len() + 1 candidates: one of them is unused.
    let other = (i64::MIN..)
        .take(all.len() + 1)
        .find(|v| !all.contains(v))?;
    for op in ops.iter_mut() {
        op.input = match op.input {
            RegisterInput::Write(v) if !observed.contains(&v) => RegisterInput::Write(other),
            RegisterInput::Cas(e, n) if !observed.contains(&n) => RegisterInput::Cas(e, other),
            input => input,
        };
    }
    Some(other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use RegisterInput as I;
    use RegisterOutput as O;

    type Op = Operation<RegisterInput, RegisterOutput>;

    fn op(id: usize, input: I, output: O, call: u64, ret: u64) -> Op {
        Operation {
            id,
            input,
            output: Some(output),
            call,
            ret: Some(ret),
        }
    }

    fn unknown_op(id: usize, input: I, call: u64) -> Op {
        Operation {
            id,
            input,
            output: None,
            call,
            ret: None,
        }
    }

    fn verdict(ops: &[Op]) -> Verdict<Option<i64>> {
        check(&RegisterModel, ops, Limits::default()).verdict
    }

    fn assert_linearizable(ops: &[Op]) {
        let v = verdict(ops);
        assert!(v.is_linearizable(), "{v:?} for {ops:#?}");
    }

    fn assert_violation(ops: &[Op]) -> Counterexample<Option<i64>> {
        match verdict(ops) {
            Verdict::NotLinearizable(cx) => cx,
            v => panic!("expected a violation, got {v:?} for {ops:#?}"),
        }
    }

    #[test]
    fn the_empty_history_is_linearizable() {
        assert_linearizable(&[]);
    }

    #[test]
    fn sequential_writes_and_reads() {
        assert_linearizable(&[
            op(0, I::Read, O::Read(None), 0, 1),
            op(1, I::Write(1), O::Written, 2, 3),
            op(2, I::Read, O::Read(Some(1)), 4, 5),
            op(3, I::Write(2), O::Written, 6, 7),
            op(4, I::Read, O::Read(Some(2)), 8, 9),
        ]);
    }

    #[test]
    fn a_read_concurrent_with_a_write_may_see_either_value() {
        for seen in [None, Some(1)] {
            assert_linearizable(&[
                op(0, I::Write(1), O::Written, 0, 10),
                op(1, I::Read, O::Read(seen), 5, 6),
            ]);
        }
    }

    #[test]
    fn a_stale_read_is_a_violation() {
        let cx = assert_violation(&[
            op(0, I::Write(1), O::Written, 0, 1),
            op(1, I::Write(2), O::Written, 2, 3),
            op(2, I::Read, O::Read(Some(1)), 4, 5),
        ]);
        assert_eq!(cx.prefix, [0, 1]);
        assert_eq!(cx.state, Some(2));
        assert_eq!(cx.stuck, 2);
    }

    #[test]
    fn a_value_never_written_is_a_violation() {
        assert_violation(&[
            op(0, I::Write(1), O::Written, 0, 10),
            op(1, I::Read, O::Read(Some(7)), 2, 3),
        ]);
    }

    #[test]
    fn reads_cannot_go_back_in_time() {
        // Two reads concurrent with a write, the first returning before the second starts:
        // new then old is not linearizable.
        assert_violation(&[
            op(0, I::Write(1), O::Written, 0, 100),
            op(1, I::Read, O::Read(Some(1)), 10, 20),
            op(2, I::Read, O::Read(None), 30, 40),
        ]);
        assert_linearizable(&[
            op(0, I::Write(1), O::Written, 0, 100),
            op(1, I::Read, O::Read(None), 10, 20),
            op(2, I::Read, O::Read(Some(1)), 30, 40),
        ]);
    }

    #[test]
    fn compare_and_set_must_match_the_state() {
        assert_linearizable(&[
            op(0, I::Write(1), O::Written, 0, 1),
            op(1, I::Cas(1, 2), O::Cas(true), 2, 3),
            op(2, I::Cas(1, 3), O::Cas(false), 4, 5),
            op(3, I::Read, O::Read(Some(2)), 6, 7),
        ]);
        // A swap that succeeded although the register held something else.
        assert_violation(&[
            op(0, I::Write(1), O::Written, 0, 1),
            op(1, I::Cas(5, 2), O::Cas(true), 2, 3),
        ]);
        // A swap that failed although the register held the expected value.
        assert_violation(&[
            op(0, I::Write(1), O::Written, 0, 1),
            op(1, I::Cas(1, 2), O::Cas(false), 2, 3),
        ]);
        // Two swaps from the same value cannot both succeed.
        assert_violation(&[
            op(0, I::Write(1), O::Written, 0, 1),
            op(1, I::Cas(1, 2), O::Cas(true), 2, 10),
            op(2, I::Cas(1, 3), O::Cas(true), 3, 11),
        ]);
    }

    #[test]
    fn an_unknown_write_may_take_effect_late_or_never() {
        // Never: nobody sees it.
        assert_linearizable(&[
            unknown_op(0, I::Write(1), 0),
            op(1, I::Read, O::Read(None), 10, 11),
            op(2, I::Read, O::Read(None), 20, 21),
        ]);
        // Late: long after the client gave up, between two reads.
        assert_linearizable(&[
            unknown_op(0, I::Write(1), 0),
            op(1, I::Read, O::Read(None), 10, 11),
            op(2, I::Read, O::Read(Some(1)), 20, 21),
        ]);
        // After a later acknowledged write: the unknown one lands last.
        assert_linearizable(&[
            unknown_op(0, I::Write(1), 0),
            op(1, I::Write(2), O::Written, 5, 6),
            op(2, I::Read, O::Read(Some(1)), 20, 21),
        ]);
        // But not before its invocation.
        assert_violation(&[
            op(0, I::Read, O::Read(Some(1)), 0, 1),
            unknown_op(1, I::Write(1), 5),
        ]);
        // And only once: once overwritten it cannot reappear.
        assert_violation(&[
            unknown_op(0, I::Write(1), 0),
            op(1, I::Read, O::Read(Some(1)), 10, 11),
            op(2, I::Write(2), O::Written, 12, 13),
            op(3, I::Read, O::Read(Some(1)), 14, 15),
        ]);
    }

    #[test]
    fn an_unknown_compare_and_set_applies_only_on_a_match() {
        assert_linearizable(&[
            op(0, I::Write(1), O::Written, 0, 1),
            unknown_op(1, I::Cas(1, 2), 2),
            op(2, I::Read, O::Read(Some(2)), 10, 11),
        ]);
        assert_violation(&[
            op(0, I::Write(1), O::Written, 0, 1),
            unknown_op(1, I::Cas(7, 2), 2),
            op(2, I::Read, O::Read(Some(2)), 10, 11),
        ]);
        // An unknown write can explain a failed swap.
        assert_linearizable(&[
            op(0, I::Write(1), O::Written, 0, 1),
            unknown_op(1, I::Write(3), 2),
            op(2, I::Cas(1, 4), O::Cas(false), 10, 11),
            op(3, I::Read, O::Read(Some(3)), 12, 13),
        ]);
    }

    #[test]
    fn a_lost_acknowledged_write_is_a_violation() {
        assert_violation(&[
            op(0, I::Write(1), O::Written, 0, 1),
            unknown_op(1, I::Write(2), 2),
            op(2, I::Write(3), O::Written, 3, 4),
            op(3, I::Read, O::Read(Some(1)), 10, 11),
        ]);
    }

    /// A history of `clients` clients on one register, each operation taking effect at a
    /// random instant inside its interval: linearizable by construction. Some operations
    /// are reported as unknown (some of those took effect, some did not).
    fn random_linearizable_history(seed: u64, clients: usize, per_client: usize) -> Vec<Op> {
        let mut rng = StdRng::seed_from_u64(seed);
        // Each client's operations are sequential; draw intervals, then effect points.
        let mut ops = Vec::new();
        for _ in 0..clients {
            let mut t = rng.gen_range(0..50u64);
            for _ in 0..per_client {
                let call = t + rng.gen_range(1..20u64);
                let ret = call + rng.gen_range(1..60u64);
                let kind = rng.gen_range(0..3u8);
                // Reads of unknown outcome are left out of histories, so only writes and
                // swaps are unknown.
                let unknown = kind != 0 && rng.gen_ratio(1, 10);
                let point = rng.gen_range(call..=ret);
                // An unknown operation may take effect after the client gave up, or never.
                let point = if unknown {
                    point + rng.gen_range(0..200)
                } else {
                    point
                };
                let applies = !unknown || rng.gen_bool(0.5);
                ops.push((call, ret, point, kind, unknown, applies));
                t = ret;
            }
        }
        // Apply operations in effect order to a real register to get their results.
        let mut order: Vec<usize> = (0..ops.len()).collect();
        order.sort_by_key(|&i| (ops[i].2, i));
        let mut state: Option<i64> = None;
        let mut next_value = 1;
        let mut result: Vec<Option<Op>> = vec![None; ops.len()];
        for i in order {
            let (call, ret, _, kind, unknown, applies) = ops[i];
            next_value += 1;
            let input = match kind {
                0 => I::Read,
                1 => I::Write(next_value),
                _ => {
                    let expected = if rng.gen_bool(0.6) {
                        state.unwrap_or(0)
                    } else {
                        next_value + 1000
                    };
                    I::Cas(expected, next_value)
                }
            };
            let output = match input {
                I::Read => O::Read(state),
                I::Write(v) => {
                    if applies {
                        state = Some(v);
                    }
                    O::Written
                }
                I::Cas(from, to) => {
                    let swapped = state == Some(from);
                    if swapped && applies {
                        state = Some(to);
                    }
                    O::Cas(swapped)
                }
            };
            result[i] = Some(if unknown {
                unknown_op(i, input, call)
            } else {
                op(i, input, output, call, ret)
            });
        }
        result.into_iter().flatten().collect()
    }

    #[test]
    fn random_linearizable_histories_pass() {
        for seed in 0..40 {
            let ops = random_linearizable_history(seed, 4, 30);
            let r = check(&RegisterModel, &ops, Limits::default());
            assert!(
                r.verdict.is_linearizable(),
                "seed {seed}: {:?} after {} steps",
                r.verdict,
                r.steps
            );
        }
    }

    #[test]
    fn random_histories_with_a_corrupted_read_fail() {
        let mut found = 0;
        for seed in 0..40 {
            let mut ops = random_linearizable_history(seed, 4, 30);
            // Make a read return a value nobody wrote: no linearization can explain it.
            let Some(r) = ops
                .iter_mut()
                .find(|o| o.input == I::Read && o.output.is_some())
            else {
                continue;
            };
            r.output = Some(O::Read(Some(-1)));
            let id = r.id;
            match check(&RegisterModel, &ops, Limits::default()).verdict {
                Verdict::NotLinearizable(cx) => {
                    assert!(!cx.prefix.contains(&id), "seed {seed}: {cx:?}");
                    found += 1;
                }
                v => panic!("seed {seed}: {v:?}"),
            }
        }
        assert!(found > 30, "only {found} histories had a read");
    }

    #[test]
    fn a_search_over_its_limits_is_undecided() {
        let ops = random_linearizable_history(7, 4, 30);
        let limits = Limits {
            max_steps: 3,
            ..Limits::default()
        };
        let r = check(&RegisterModel, &ops, limits);
        assert!(
            matches!(r.verdict, Verdict::Undecided { .. }),
            "{:?}",
            r.verdict
        );
    }

    /// Whether some order of all known-outcome operations and some subset of the
    /// unknown-outcome ones respects real time and the model: the definition, by brute
    /// force, for small histories.
    fn brute_force(ops: &[Op]) -> bool {
        fn extend(
            ops: &[Op],
            used: &mut Vec<bool>,
            order: &mut Vec<usize>,
            state: Option<i64>,
        ) -> bool {
            // Done when every known-outcome operation is placed (the rest never happen).
            if ops
                .iter()
                .zip(used.iter())
                .all(|(o, &u)| u || o.ret.is_none())
            {
                return true;
            }
            for i in 0..ops.len() {
                if used[i] {
                    continue;
                }
                // i may come next only if no unplaced operation returned before i's call.
                let blocked = ops
                    .iter()
                    .enumerate()
                    .any(|(j, o)| !used[j] && j != i && o.ret.is_some_and(|r| r < ops[i].call));
                if blocked {
                    continue;
                }
                let Some(next) = RegisterModel.step(&state, &ops[i].input, ops[i].output.as_ref())
                else {
                    continue;
                };
                used[i] = true;
                order.push(i);
                if extend(ops, used, order, next) {
                    return true;
                }
                order.pop();
                used[i] = false;
            }
            false
        }
        extend(ops, &mut vec![false; ops.len()], &mut Vec::new(), None)
    }

    /// A small random history with values from a tiny domain (so they repeat) and random
    /// results (so many histories are not linearizable).
    fn random_small_history(rng: &mut StdRng, n: usize) -> Vec<Op> {
        (0..n)
            .map(|id| {
                let call = rng.gen_range(0..20u64);
                let ret = call + rng.gen_range(0..10u64);
                let val = |rng: &mut StdRng| rng.gen_range(1..4i64);
                let (input, output) = match rng.gen_range(0..3) {
                    0 => {
                        let seen = if rng.gen_bool(0.2) {
                            None
                        } else {
                            Some(val(rng))
                        };
                        (I::Read, O::Read(seen))
                    }
                    1 => (I::Write(val(rng)), O::Written),
                    _ => (I::Cas(val(rng), val(rng)), O::Cas(rng.gen_bool(0.5))),
                };
                if input != I::Read && rng.gen_ratio(1, 4) {
                    unknown_op(id, input, call)
                } else {
                    op(id, input, output, call, ret)
                }
            })
            .collect()
    }

    #[test]
    fn the_search_agrees_with_brute_force_on_small_histories() {
        let mut rng = StdRng::seed_from_u64(42);
        let (mut yes, mut no) = (0, 0);
        for round in 0..3000 {
            let n = rng.gen_range(1..=6);
            let ops = random_small_history(&mut rng, n);
            let expected = brute_force(&ops);
            let got = check(&RegisterModel, &ops, Limits::default()).verdict;
            assert_eq!(
                got.is_linearizable(),
                expected,
                "round {round}: {got:?} for {ops:#?}"
            );
            assert!(!matches!(got, Verdict::Undecided { .. }));
            let mut collapsed = ops.clone();
            collapse_unobserved(&mut collapsed);
            assert_eq!(
                check(&RegisterModel, &collapsed, Limits::default())
                    .verdict
                    .is_linearizable(),
                expected,
                "round {round}, collapsed: {collapsed:#?}"
            );
            if expected {
                yes += 1;
            } else {
                no += 1;
            }
        }
        assert!(yes > 300 && no > 300, "{yes} linearizable, {no} not");
    }

    #[test]
    fn records_become_per_key_operations() {
        let rec = |index, invocation, outcome, completion| OpRecord {
            index,
            process: 0,
            node: 0,
            invocation,
            outcome,
            completion,
            call_ns: 10 * index as u64,
            return_ns: 10 * index as u64 + 5,
            error: None,
        };
        let history = vec![
            rec(
                0,
                Invocation::Write { key: 1, value: 5 },
                Outcome::Ok,
                Some(Completion::Written),
            ),
            rec(
                1,
                Invocation::Write { key: 2, value: 6 },
                Outcome::Fail,
                None,
            ),
            rec(2, Invocation::Read { key: 2 }, Outcome::Unknown, None),
            rec(
                3,
                Invocation::Cas {
                    key: 2,
                    expected: 1,
                    new: 7,
                },
                Outcome::Unknown,
                None,
            ),
            rec(
                4,
                Invocation::Read { key: 1 },
                Outcome::Ok,
                Some(Completion::Value { value: Some(5) }),
            ),
            rec(5, Invocation::ReadTotal, Outcome::Ok, None),
        ];
        let by_key = register_operations(&history).expect("valid records");
        assert_eq!(by_key.len(), 2);
        assert_eq!(by_key[&1].len(), 2);
        assert_eq!(
            by_key[&2].len(),
            1,
            "the failed write and the unknown read are left out"
        );
        assert_eq!(by_key[&2][0].ret, None);
        let verdicts = check_registers(&history, Limits::default()).expect("valid records");
        assert!(verdicts.iter().all(|v| v.result.verdict.is_linearizable()));

        let bad = vec![rec(
            0,
            Invocation::Read { key: 1 },
            Outcome::Ok,
            Some(Completion::Written),
        )];
        assert!(register_operations(&bad).is_err());
    }
}
