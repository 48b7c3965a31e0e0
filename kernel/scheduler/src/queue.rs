//! Bounded per-priority queues with a weighted-fair dequeue.
//!
//! Stride scheduling: each priority class has a stride inversely
//! proportional to its weight and a "pass"; the non-empty class with the
//! smallest pass goes next and its pass advances by its stride. Under
//! sustained load the classes are served in proportion to their weights
//! (8:4:1 by default), so low priority is never starved; a class that was
//! idle rejoins at the current virtual time, so high priority arriving into
//! a low-priority flood is served next rather than behind the flood, and an
//! idle class cannot bank credit to burst later.
//!
//! This module is plain data: no clocks, no channels, no tasks.

use std::collections::VecDeque;

use crate::request::{PerPriority, Priority};

/// One unit of service is `STRIDE_UNIT / weight` of virtual time.
const STRIDE_UNIT: u64 = 1 << 20;

/// Bounded FIFO queues, one per priority, dequeued weighted-fairly.
#[derive(Debug)]
pub struct WeightedQueues<T> {
    queues: [VecDeque<T>; 3],
    capacity: PerPriority<usize>,
    stride: [u64; 3],
    pass: [u64; 3],
    virtual_time: u64,
}

impl<T> WeightedQueues<T> {
    /// `weights` of 0 count as 1 (nothing may starve).
    pub fn new(capacity: PerPriority<usize>, weights: PerPriority<u32>) -> Self {
        let stride =
            Priority::ALL.map(|priority| STRIDE_UNIT / u64::from((*weights.get(priority)).max(1)));
        WeightedQueues {
            queues: [VecDeque::new(), VecDeque::new(), VecDeque::new()],
            capacity,
            stride,
            pass: [0; 3],
            virtual_time: 0,
        }
    }

    /// Appends `item`, or gives it back when the priority's queue is full.
    pub fn try_push(&mut self, priority: Priority, item: T) -> Result<(), T> {
        let index = priority.index();
        if self.queues[index].len() >= *self.capacity.get(priority) {
            return Err(item);
        }
        if self.queues[index].is_empty() {
            // Rejoin at the current virtual time: no banked credit, no debt.
            self.pass[index] = self.pass[index].max(self.virtual_time);
        }
        self.queues[index].push_back(item);
        Ok(())
    }

    /// Puts `item` back at the front of its queue, without a capacity
    /// check: it held a place before (a request set aside and released).
    pub fn push_front(&mut self, priority: Priority, item: T) {
        let index = priority.index();
        if self.queues[index].is_empty() {
            self.pass[index] = self.pass[index].max(self.virtual_time);
        }
        self.queues[index].push_front(item);
    }

    /// The next item by weighted-fair order; ties go to the more urgent
    /// priority.
    pub fn pop(&mut self) -> Option<(Priority, T)> {
        self.pop_where(|_| true)
    }

    /// [`WeightedQueues::pop`] among the priorities `allowed` accepts (the
    /// others keep their place and their pass).
    pub fn pop_where(&mut self, allowed: impl Fn(Priority) -> bool) -> Option<(Priority, T)> {
        let priority = Priority::ALL
            .into_iter()
            .filter(|priority| allowed(*priority) && !self.queues[priority.index()].is_empty())
            .min_by_key(|priority| self.pass[priority.index()])?;
        let index = priority.index();
        self.virtual_time = self.pass[index];
        self.pass[index] += self.stride[index];
        self.queues[index].pop_front().map(|item| (priority, item))
    }

    /// Removes the first item of `priority` matching `predicate`.
    pub fn remove(&mut self, priority: Priority, predicate: impl Fn(&T) -> bool) -> Option<T> {
        let queue = &mut self.queues[priority.index()];
        let position = queue.iter().position(predicate)?;
        queue.remove(position)
    }

    /// Takes every queued item, most urgent class first.
    pub fn drain(&mut self) -> Vec<(Priority, T)> {
        let mut drained = Vec::with_capacity(self.total_len());
        for priority in Priority::ALL {
            drained.extend(
                self.queues[priority.index()]
                    .drain(..)
                    .map(|item| (priority, item)),
            );
        }
        drained
    }

    pub fn len(&self, priority: Priority) -> usize {
        self.queues[priority.index()].len()
    }

    pub fn total_len(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.total_len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues(capacity: usize) -> WeightedQueues<u32> {
        WeightedQueues::new(
            PerPriority {
                high: capacity,
                medium: capacity,
                low: capacity,
            },
            PerPriority {
                high: 8,
                medium: 4,
                low: 1,
            },
        )
    }

    #[test]
    fn full_queue_gives_the_item_back() {
        let mut queues = queues(2);
        assert_eq!(queues.try_push(Priority::Low, 1), Ok(()));
        assert_eq!(queues.try_push(Priority::Low, 2), Ok(()));
        assert_eq!(queues.try_push(Priority::Low, 3), Err(3));
        // Other priorities have their own room.
        assert_eq!(queues.try_push(Priority::High, 4), Ok(()));
    }

    #[test]
    fn saturated_classes_are_served_in_proportion_to_weights() {
        let mut queues = queues(10_000);
        for item in 0..5_000 {
            for priority in Priority::ALL {
                queues.try_push(priority, item).unwrap();
            }
        }
        let mut served = [0usize; 3];
        for _ in 0..1_300 {
            let (priority, _) = queues.pop().unwrap();
            served[priority.index()] += 1;
        }
        assert_eq!(served, [800, 400, 100]);
    }

    #[test]
    fn high_arriving_into_a_low_flood_goes_next() {
        let mut queues = queues(10_000);
        for item in 0..1_000 {
            queues.try_push(Priority::Low, item).unwrap();
        }
        for _ in 0..500 {
            queues.pop().unwrap();
        }
        queues.try_push(Priority::High, 7).unwrap();
        assert_eq!(queues.pop(), Some((Priority::High, 7)));
    }

    #[test]
    fn an_idle_class_does_not_bank_credit() {
        let mut queues = queues(10_000);
        for item in 0..100 {
            queues.try_push(Priority::High, item).unwrap();
        }
        while queues.pop().is_some() {}
        // Low was idle while high ran; now both saturate: still 8:1.
        for item in 0..1_000 {
            queues.try_push(Priority::Low, item).unwrap();
            queues.try_push(Priority::High, item).unwrap();
        }
        let mut served = [0usize; 3];
        for _ in 0..90 {
            let (priority, _) = queues.pop().unwrap();
            served[priority.index()] += 1;
        }
        assert_eq!(served[Priority::High.index()], 80);
        assert_eq!(served[Priority::Low.index()], 10);
    }

    #[test]
    fn pop_where_skips_disallowed_classes() {
        let mut queues = queues(10);
        queues.try_push(Priority::Low, 1).unwrap();
        assert_eq!(
            queues.pop_where(|priority| priority == Priority::High),
            None
        );
        queues.try_push(Priority::High, 2).unwrap();
        assert_eq!(
            queues.pop_where(|priority| priority == Priority::High),
            Some((Priority::High, 2))
        );
        assert_eq!(queues.pop(), Some((Priority::Low, 1)));
    }

    #[test]
    fn remove_and_drain() {
        let mut queues = queues(10);
        for item in 0..3 {
            queues.try_push(Priority::Medium, item).unwrap();
        }
        assert_eq!(queues.remove(Priority::Medium, |item| *item == 1), Some(1));
        assert_eq!(queues.remove(Priority::Medium, |item| *item == 9), None);
        assert_eq!(
            queues.drain(),
            vec![(Priority::Medium, 0), (Priority::Medium, 2)]
        );
        assert!(queues.is_empty());
    }
}
