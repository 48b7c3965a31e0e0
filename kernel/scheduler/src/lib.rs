//! spindle-scheduler: requests, their priority queues, dynamic batching,
//! retries and circuit breakers.
