//! Assertion helpers on [`Outcomes`](crate::Outcomes) that fail with a report of every child.
