//! Dynamic batching as a pure function: given the jobs pulled so far and how long the oldest has waited,
//! decide whether to render now, and which jobs go together.

use std::time::Duration;

/// Why a batch was closed (logged, and asserted in tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchClosed {
    /// The batch reached `max_size`.
    Full,
    /// The oldest job waited `max_wait`.
    Waited,
    /// The worker is draining: render what is held.
    Draining,
}

#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_size: usize,
    pub max_wait: Duration,
}

/// Whether to stop collecting: `held` jobs pulled, the first of them `waited` ago.
pub fn should_close(
    limits: BatchLimits,
    held: usize,
    waited: Duration,
    draining: bool,
) -> Option<BatchClosed> {
    if held == 0 {
        return None;
    }
    if held >= limits.max_size {
        Some(BatchClosed::Full)
    } else if draining {
        Some(BatchClosed::Draining)
    } else if waited >= limits.max_wait {
        Some(BatchClosed::Waited)
    } else {
        None
    }
}

/// Splits held jobs into groups that can share one render pass (same batch key), keeping arrival order
/// inside each group and ordering groups by their first job's arrival.
pub fn group_compatible<T>(jobs: Vec<T>, key: impl Fn(&T) -> String) -> Vec<Vec<T>> {
    let mut groups: Vec<(String, Vec<T>)> = Vec::new();
    for job in jobs {
        let k = key(&job);
        match groups.iter_mut().find(|(existing, _)| *existing == k) {
            Some((_, group)) => group.push(job),
            None => groups.push((k, vec![job])),
        }
    }
    groups.into_iter().map(|(_, group)| group).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BatchLimits = BatchLimits {
        max_size: 4,
        max_wait: Duration::from_millis(20),
    };

    #[test]
    fn closes_when_full_waited_or_draining() {
        let cases = [
            (0, 100, false, None),
            (1, 0, false, None),
            (3, 19, false, None),
            (4, 0, false, Some(BatchClosed::Full)),
            (2, 20, false, Some(BatchClosed::Waited)),
            (2, 0, true, Some(BatchClosed::Draining)),
            (0, 0, true, None),
        ];
        for (held, waited_ms, draining, expected) in cases {
            let got = should_close(LIMITS, held, Duration::from_millis(waited_ms), draining);
            assert_eq!(
                got, expected,
                "held={held} waited={waited_ms}ms draining={draining}"
            );
        }
    }

    #[test]
    fn groups_by_key_in_arrival_order() {
        let jobs = vec![("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5)];
        let groups = group_compatible(jobs, |(k, _)| k.to_string());
        let ids: Vec<Vec<i32>> = groups
            .iter()
            .map(|g| g.iter().map(|(_, i)| *i).collect())
            .collect();
        assert_eq!(ids, vec![vec![1, 3], vec![2, 5], vec![4]]);
    }
}
