//! Who goes next in a scheduled run: a pure policy beside `release`. The
//! call role holds every child at its steps and, whenever none of them
//! runs, asks the [`Chooser`] which held child goes on; so between two
//! steps exactly one child runs.

/// How a scheduled run picks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scheduling {
    /// Uniformly among the held children, from a seed.
    Random { seed: u64 },
    /// The passages of a recorded schedule, in order: `(child, step)`.
    Replay(Vec<(usize, String)>),
}

/// A replay that found another step than recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Diverged {
    pub position: usize,
    pub child: usize,
    pub expected: String,
    /// The step the child is at, or `None` when it is at none (it ended,
    /// or has not reached one).
    pub seen: Option<String>,
}

/// The policy of one run.
pub(crate) struct Chooser {
    scheduling: Scheduling,
    /// xorshift64* state, for `Random`.
    state: u64,
}

impl Chooser {
    pub(crate) fn new(scheduling: Scheduling) -> Chooser {
        let state = match &scheduling {
            Scheduling::Random { seed } => seed ^ 0x9e37_79b9_7f4a_7c15,
            Scheduling::Replay(_) => 0,
        };
        Chooser {
            scheduling,
            state: state.max(1),
        }
    }

    /// Which child goes on at passage `position`, among `held` (each held
    /// child's index and the step it waits at, in index order; not empty).
    pub(crate) fn choose(
        &mut self,
        position: usize,
        held: &[(usize, &str)],
    ) -> Result<usize, Diverged> {
        match &self.scheduling {
            Scheduling::Random { .. } => {
                self.state ^= self.state >> 12;
                self.state ^= self.state << 25;
                self.state ^= self.state >> 27;
                let draw = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d);
                Ok(held[(draw % held.len() as u64) as usize].0)
            }
            Scheduling::Replay(passages) => {
                let Some((child, expected)) = passages.get(position) else {
                    // The recording ended while children still wait: the
                    // program took more steps than it did then.
                    let (child, seen) = held[0];
                    return Err(Diverged {
                        position,
                        child,
                        expected: "the end of the recording".to_owned(),
                        seen: Some(seen.to_owned()),
                    });
                };
                let seen = held
                    .iter()
                    .find(|(c, _)| c == child)
                    .map(|(_, step)| (*step).to_owned());
                if seen.as_deref() == Some(expected.as_str()) {
                    Ok(*child)
                } else {
                    Err(Diverged {
                        position,
                        child: *child,
                        expected: expected.clone(),
                        seen,
                    })
                }
            }
        }
    }

    /// The passages a replay still expected when the run ended, if any.
    pub(crate) fn left_over(&self, position: usize) -> Option<Diverged> {
        match &self.scheduling {
            Scheduling::Replay(passages) => {
                passages.get(position).map(|(child, expected)| Diverged {
                    position,
                    child: *child,
                    expected: expected.clone(),
                    seen: None,
                })
            }
            Scheduling::Random { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_picks_the_recorded_child_and_checks_its_step() {
        let mut chooser = Chooser::new(Scheduling::Replay(vec![
            (1, "start".into()),
            (0, "start".into()),
            (0, "after-select".into()),
        ]));
        let both = [(0, "start"), (1, "start")];
        assert_eq!(chooser.choose(0, &both), Ok(1));
        assert_eq!(chooser.choose(1, &[(0, "start")]), Ok(0));
        assert_eq!(
            chooser.choose(2, &[(0, "before-update"), (1, "after-select")]),
            Err(Diverged {
                position: 2,
                child: 0,
                expected: "after-select".into(),
                seen: Some("before-update".into()),
            })
        );
        assert_eq!(
            chooser.choose(2, &[(1, "after-select")]),
            Err(Diverged {
                position: 2,
                child: 0,
                expected: "after-select".into(),
                seen: None,
            }),
            "child 0 is at no step"
        );
        assert_eq!(
            chooser.choose(3, &both).unwrap_err().expected,
            "the end of the recording"
        );
        assert_eq!(chooser.left_over(3), None);
        assert_eq!(chooser.left_over(2).unwrap().expected, "after-select");
    }

    #[test]
    fn random_picks_only_held_children_the_same_way_for_a_seed() {
        let held = [(0, "a"), (3, "b"), (5, "c")];
        let picks = |seed| {
            let mut chooser = Chooser::new(Scheduling::Random { seed });
            (0..64)
                .map(|i| chooser.choose(i, &held).unwrap())
                .collect::<Vec<_>>()
        };
        let first = picks(7);
        assert_eq!(first, picks(7), "a seed repeats its choices");
        assert_ne!(first, picks(8));
        assert!(first.iter().all(|c| [0, 3, 5].contains(c)));
        for child in [0, 3, 5] {
            assert!(
                first.contains(&child),
                "child {child} never picked in 64 draws"
            );
        }
    }
}
