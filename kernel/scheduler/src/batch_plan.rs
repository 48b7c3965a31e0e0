//! Batch planning: which queued items go into the next batch, and whether
//! it should go now. Pure functions over token counts, no queue, no clock:
//! the batcher (`batcher.rs`) owns those.
//!
//! A batch starts from the oldest item (nobody waits forever) and takes the
//! queued items closest to it in length (length buckets without fixed
//! edges), each only while the batch's real tokens stay at least
//! `min_padding_ratio` of its padded tokens (items × longest) and the padded
//! cost stays within `max_batch_tokens`.
//!
//! When the backend measured what each batch shape costs ([`BatchCost`],
//! the engine's start-up calibration), the plan keeps the prefix of those
//! candidates that computes the most real tokens per second, and only a
//! prefix that costs no more than running its items one by one: batching
//! never does worse than batch 1. The batch is then full when it has the
//! size that is fastest for its length; a smaller one waits for similar
//! items, within the batcher's bound on waiting.

use std::fmt;

/// What a batch of `batch` texts padded to `seq` tokens costs the backend,
/// in seconds, as measured on this machine.
pub trait BatchCost: Send + Sync {
    fn seconds(&self, batch: usize, seq: usize) -> f64;
}

impl fmt::Debug for dyn BatchCost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BatchCost")
    }
}

/// Limits a batch must respect.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanLimits {
    /// Budget of padded tokens (items × longest) per batch.
    pub max_batch_tokens: usize,
    pub max_batch_size: usize,
    /// Real over padded tokens a batch keeps at least (0 disables it).
    pub min_padding_ratio: f64,
}

/// Which queued items form the next batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPlan {
    /// Indices into the token list; the oldest (0) is always first.
    pub members: Vec<usize>,
    /// Whether the batch should go now: adding another queued item would
    /// break the token budget or the size limit, or (with a cost model) the
    /// batch already has the size that is fastest for its length.
    pub full: bool,
}

/// Plans a batch over queued token counts, oldest first (see the module
/// documentation). Without a cost model it takes as many similar items as
/// the limits allow.
pub fn plan_batch(
    tokens: &[usize],
    limits: &PlanLimits,
    cost: Option<&dyn BatchCost>,
) -> BatchPlan {
    let Some(&anchor) = tokens.first() else {
        return BatchPlan {
            members: Vec::new(),
            full: false,
        };
    };
    let max_batch_size = limits.max_batch_size.max(1);
    let mut members = vec![0];
    let mut longest = anchor;
    let mut real = anchor;
    let mut full = anchor >= limits.max_batch_tokens;
    let mut candidates: Vec<usize> = (1..tokens.len()).collect();
    // Closest length first; among equals, the oldest.
    candidates.sort_by_key(|&index| (tokens[index].abs_diff(anchor), index));
    for index in candidates {
        if members.len() >= max_batch_size {
            full = true;
            break;
        }
        let new_longest = longest.max(tokens[index]);
        let new_padded = new_longest * (members.len() + 1);
        if ((real + tokens[index]) as f64) < limits.min_padding_ratio * new_padded as f64 {
            // Too different in length: leave it for a batch of its own
            // kind; it says nothing about whether this batch is full.
        } else if new_padded > limits.max_batch_tokens {
            full = true;
        } else {
            members.push(index);
            longest = new_longest;
            real += tokens[index];
        }
    }
    if members.len() >= max_batch_size || longest * (members.len() + 1) > limits.max_batch_tokens {
        full = true;
    }
    let Some(cost) = cost else {
        return BatchPlan { members, full };
    };
    let best = best_prefix(tokens, &members, cost);
    if best < members.len() {
        // A larger batch would compute fewer real tokens per second.
        members.truncate(best);
        return BatchPlan {
            members,
            full: true,
        };
    }
    let longest = members
        .iter()
        .map(|&index| tokens[index])
        .max()
        .unwrap_or(anchor);
    let fastest = fastest_size(longest, limits, cost);
    BatchPlan {
        full: full || members.len() >= fastest,
        members,
    }
}

/// The prefix length of `members` (ordered as the plan took them) with the
/// most real tokens per second, among prefixes that cost no more than
/// their items one by one.
pub fn best_prefix(tokens: &[usize], members: &[usize], cost: &dyn BatchCost) -> usize {
    let mut best = (1, f64::MIN);
    let (mut longest, mut real, mut one_by_one) = (0usize, 0usize, 0f64);
    for (count, &index) in members.iter().enumerate() {
        let count = count + 1;
        longest = longest.max(tokens[index]);
        real += tokens[index];
        one_by_one += cost.seconds(1, tokens[index]);
        let together = cost.seconds(count, longest);
        if count > 1 && together > one_by_one {
            continue;
        }
        let rate = real as f64 / together.max(f64::MIN_POSITIVE);
        if rate > best.1 * (1.0 + 1e-9) {
            best = (count, rate);
        }
    }
    best.0
}

/// The batch size, within the limits, that computes the most tokens per
/// second for texts of `seq` tokens.
pub fn fastest_size(seq: usize, limits: &PlanLimits, cost: &dyn BatchCost) -> usize {
    let seq = seq.max(1);
    let largest = limits
        .max_batch_size
        .max(1)
        .min((limits.max_batch_tokens / seq).max(1));
    let mut best = (1, f64::MIN);
    for size in 1..=largest {
        let rate = size as f64 / cost.seconds(size, seq).max(f64::MIN_POSITIVE);
        if rate > best.1 * (1.0 + 1e-9) {
            best = (size, rate);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_batch_tokens: usize, max_batch_size: usize, ratio: f64) -> PlanLimits {
        PlanLimits {
            max_batch_tokens,
            max_batch_size,
            min_padding_ratio: ratio,
        }
    }

    /// 2 ms per batch plus 0.1 ms per padded token up to 8 texts; past
    /// that each padded token costs twice as much (caches overflow).
    struct Curve;

    impl BatchCost for Curve {
        fn seconds(&self, batch: usize, seq: usize) -> f64 {
            let tokens = (batch * seq) as f64;
            let per_token = if batch <= 8 { 1e-4 } else { 2e-4 };
            2e-3 + per_token * tokens
        }
    }

    /// Batching never pays: a batch costs more than its items alone.
    struct NoGain;

    impl BatchCost for NoGain {
        fn seconds(&self, batch: usize, seq: usize) -> f64 {
            1e-3 * (batch * seq) as f64 * (1.0 + batch as f64 / 10.0)
        }
    }

    #[test]
    fn plan_groups_similar_lengths_within_the_budget() {
        // Budget 40: the oldest (10) takes 9, 11 and 10 (4 × 11 = 44 > 40
        // once four are in, so the fourth must keep the longest at 10).
        let tokens = [10, 50, 9, 30, 11, 10];
        let plan = plan_batch(&tokens, &limits(40, 64, 0.75), None);
        let lengths: Vec<usize> = plan.members.iter().map(|&i| tokens[i]).collect();
        assert_eq!(lengths, vec![10, 10, 9]);
        assert!(plan.full);
    }

    #[test]
    fn plan_is_not_full_when_everything_fits() {
        let plan = plan_batch(&[5, 6, 7], &limits(100, 64, 0.75), None);
        assert_eq!(plan.members, vec![0, 1, 2]);
        assert!(!plan.full);
    }

    #[test]
    fn items_far_in_length_are_left_out_without_making_the_batch_full() {
        let plan = plan_batch(&[8, 64, 8, 64, 8], &limits(512, 64, 0.75), None);
        assert_eq!(plan.members, vec![0, 2, 4]);
        assert!(!plan.full, "the long ones wait for a batch of their own");
        let plan = plan_batch(&[8, 64, 8, 64, 8], &limits(512, 64, 0.0), None);
        assert_eq!(plan.members.len(), 5);
    }

    #[test]
    fn padding_stays_above_the_ratio() {
        let tokens: Vec<usize> = (0..200).map(|i| 8 + (i * 37) % 70).collect();
        let plan = plan_batch(&tokens, &limits(8192, 64, 0.95), None);
        let longest = plan.members.iter().map(|&i| tokens[i]).max().unwrap();
        let real: usize = plan.members.iter().map(|&i| tokens[i]).sum();
        assert!(real as f64 >= 0.95 * (longest * plan.members.len()) as f64);
        assert!(plan.members.len() > 1);
    }

    #[test]
    fn an_oversized_item_goes_alone() {
        let plan = plan_batch(&[500, 5], &limits(100, 64, 0.75), None);
        assert_eq!(plan.members, vec![0]);
        assert!(plan.full);
    }

    #[test]
    fn size_limit_makes_a_batch_full() {
        let plan = plan_batch(&[1, 1, 1, 1], &limits(100, 2, 0.75), None);
        assert_eq!(plan.members.len(), 2);
        assert!(plan.full);
    }

    #[test]
    fn the_cost_model_stops_at_the_fastest_size() {
        // Twenty equal items: the curve is fastest at 8 per batch.
        let tokens = vec![32; 20];
        let plan = plan_batch(&tokens, &limits(8192, 64, 0.95), Some(&Curve));
        assert_eq!(plan.members.len(), 8);
        assert!(plan.full);
        assert_eq!(fastest_size(32, &limits(8192, 64, 0.95), &Curve), 8);
    }

    #[test]
    fn a_batch_smaller_than_the_fastest_size_waits() {
        let plan = plan_batch(&[32, 32, 32], &limits(8192, 64, 0.95), Some(&Curve));
        assert_eq!(plan.members.len(), 3);
        assert!(!plan.full, "five more would be faster: wait for them");
    }

    #[test]
    fn batching_is_never_worse_than_batch_one() {
        let tokens = vec![32; 10];
        let plan = plan_batch(&tokens, &limits(8192, 64, 0.95), Some(&NoGain));
        assert_eq!(plan.members, vec![0]);
        assert!(plan.full);
    }
}
