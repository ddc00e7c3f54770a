//! The order of a build run: which entries start, and which are skipped,
//! as their needs are settled. Pure: [`super::build_plan`] runs the builds
//! and reports how they end; this decides what comes next.

use std::collections::{BTreeMap, BTreeSet};

use super::PackageStatus;

/// What to do with an entry whose needs are settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Decision {
    /// Build it.
    Start(usize),
    /// Do not build it: `failed` of its needs failed or were skipped (or
    /// none, when the plan blocked it). It is settled as skipped.
    Skip {
        /// The entry.
        entry: usize,
        /// Its needs that failed or were skipped, in index order.
        failed: Vec<usize>,
    },
}

/// The state of a build run over the entries it involves.
#[derive(Debug)]
pub(super) struct Schedule {
    /// Per entry involved: the entries it needs (those involved), and
    /// whether the plan blocked it.
    entries: BTreeMap<usize, (Vec<usize>, bool)>,
    /// How the settled entries ended.
    settled: BTreeMap<usize, PackageStatus>,
    started: BTreeSet<usize>,
    running: usize,
    jobs: usize,
}

impl Schedule {
    /// A run of at most `jobs` (at least 1) builds at once.
    pub(super) fn new(jobs: usize) -> Schedule {
        Schedule { entries: BTreeMap::new(), settled: BTreeMap::new(), started: BTreeSet::new(), running: 0, jobs: jobs.max(1) }
    }

    /// Involve `entry`, which needs `needs` to be built first; a `blocked`
    /// one (the plan says something it needs cannot be built) is skipped.
    pub(super) fn want(&mut self, entry: usize, needs: Vec<usize>, blocked: bool) {
        self.entries.insert(entry, (needs, blocked));
    }

    /// `entry` ended as `status` (built, or decided before the run: a plan
    /// error, not for this arch).
    pub(super) fn settle(&mut self, entry: usize, status: PackageStatus) {
        if self.started.contains(&entry) && !self.settled.contains_key(&entry) {
            self.running -= 1;
        }
        self.settled.insert(entry, status);
    }

    /// Builds started and not settled.
    pub(super) fn running(&self) -> usize {
        self.running
    }

    /// Every decision that can be made now, in index order, repeated until
    /// none is left: an entry with a need that failed or was skipped is
    /// skipped at once (so its dependents are too, in the same call); one
    /// whose needs are all built starts while fewer than `jobs` run. An
    /// entry that needs one that was neither (not for this arch) waits
    /// for ever, as it did before this was a module of its own.
    pub(super) fn decide(&mut self) -> Vec<Decision> {
        let mut out = Vec::new();
        let mut progress = true;
        while progress {
            progress = false;
            for (&i, (needs, blocked)) in &self.entries {
                if self.settled.contains_key(&i) || self.started.contains(&i) {
                    continue;
                }
                let failed: Vec<usize> = needs
                    .iter()
                    .copied()
                    .filter(|j| matches!(self.settled.get(j), Some(PackageStatus::Failed | PackageStatus::Skipped)))
                    .collect();
                if !failed.is_empty() || *blocked {
                    self.settled.insert(i, PackageStatus::Skipped);
                    out.push(Decision::Skip { entry: i, failed });
                    progress = true;
                    continue;
                }
                let ready = needs.iter().all(|j| {
                    matches!(self.settled.get(j), Some(PackageStatus::Built | PackageStatus::Cached | PackageStatus::Downloaded))
                });
                if ready && self.running < self.jobs {
                    self.started.insert(i);
                    self.running += 1;
                    out.push(Decision::Start(i));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PackageStatus::*;

    /// A schedule of `n` entries with these needs, none blocked.
    fn schedule(jobs: usize, needs: &[&[usize]]) -> Schedule {
        let mut s = Schedule::new(jobs);
        for (i, n) in needs.iter().enumerate() {
            s.want(i, n.to_vec(), false);
        }
        s
    }

    #[test]
    fn entries_start_in_index_order_once_their_needs_are_built() {
        // 0 <- 1 <- 2, and 3 alone.
        let mut s = schedule(4, &[&[], &[0], &[1], &[]]);
        assert_eq!(s.decide(), [Decision::Start(0), Decision::Start(3)]);
        assert_eq!(s.decide(), []);
        s.settle(0, Built);
        assert_eq!(s.decide(), [Decision::Start(1)]);
        s.settle(3, Cached);
        s.settle(1, Downloaded);
        assert_eq!(s.decide(), [Decision::Start(2)]);
        s.settle(2, Built);
        assert_eq!((s.decide(), s.running()), (vec![], 0));
    }

    #[test]
    fn no_more_than_jobs_run_at_once() {
        let mut s = schedule(2, &[&[], &[], &[], &[]]);
        assert_eq!(s.decide(), [Decision::Start(0), Decision::Start(1)]);
        assert_eq!(s.running(), 2);
        assert_eq!(s.decide(), []);
        s.settle(1, Failed);
        assert_eq!(s.decide(), [Decision::Start(2)]);
        s.settle(0, Built);
        s.settle(2, Built);
        assert_eq!(s.decide(), [Decision::Start(3)]);
        assert_eq!(s.running(), 1);
        // Zero jobs means one.
        let mut s = schedule(0, &[&[], &[]]);
        assert_eq!(s.decide(), [Decision::Start(0)]);
    }

    #[test]
    fn dependents_of_a_failure_are_skipped_transitively_in_one_call() {
        // 1 needs 0; 3 needs 0 and 4; 4 alone.
        let mut s = schedule(1, &[&[], &[0], &[], &[0, 4], &[]]);
        assert_eq!(s.decide(), [Decision::Start(0)]);
        s.settle(0, Failed);
        assert_eq!(
            s.decide(),
            [Decision::Skip { entry: 1, failed: vec![0] }, Decision::Start(2), Decision::Skip { entry: 3, failed: vec![0] }]
        );
        s.settle(2, Built);
        assert_eq!(s.decide(), [Decision::Start(4)]);
        s.settle(4, Built);
        assert_eq!((s.decide(), s.running()), (vec![], 0));
        // Listed before what it needs: 1 needs 2 needs 0. The call goes
        // round again once 2 is skipped.
        let mut s = schedule(1, &[&[], &[2], &[0]]);
        assert_eq!(s.decide(), [Decision::Start(0)]);
        s.settle(0, Skipped);
        assert_eq!(s.decide(), [Decision::Skip { entry: 2, failed: vec![0] }, Decision::Skip { entry: 1, failed: vec![2] }]);
    }

    #[test]
    fn a_need_that_failed_skips_even_while_another_runs() {
        let mut s = schedule(2, &[&[], &[], &[0, 1]]);
        assert_eq!(s.decide(), [Decision::Start(0), Decision::Start(1)]);
        s.settle(1, Failed);
        assert_eq!(s.decide(), [Decision::Skip { entry: 2, failed: vec![1] }]);
        assert_eq!(s.running(), 1);
    }

    #[test]
    fn blocked_entries_and_their_dependents_are_skipped() {
        let mut s = Schedule::new(2);
        s.want(0, vec![], true);
        s.want(1, vec![0], false);
        s.want(2, vec![], false);
        assert_eq!(
            s.decide(),
            [Decision::Skip { entry: 0, failed: vec![] }, Decision::Skip { entry: 1, failed: vec![0] }, Decision::Start(2)]
        );
    }

    #[test]
    fn entries_settled_before_the_run_are_not_started() {
        // 0 failed to plan, 1 is not for this arch: dependents of 0 are
        // skipped, those of 1 wait (they are left without a result).
        let mut s = schedule(2, &[&[], &[], &[0], &[1]]);
        s.settle(0, Failed);
        s.settle(1, NotForArch);
        assert_eq!(s.decide(), [Decision::Skip { entry: 2, failed: vec![0] }]);
        assert_eq!(s.running(), 0);
    }
}
