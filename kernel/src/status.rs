//! The latest state of every service, kept from the supervisor's events for
//! the status API.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::supervisor::Event;

/// Service name to its latest event.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard {
    latest: Arc<Mutex<BTreeMap<String, Event>>>,
}

impl StatusBoard {
    /// A sender to add to `SupervisorConfig::subscribers`; the board follows
    /// its events until the supervisor drops it. Must run inside tokio.
    pub fn subscriber(&self) -> mpsc::UnboundedSender<Event> {
        let (sender, mut receiver) = mpsc::unbounded_channel::<Event>();
        let latest = self.latest.clone();
        tokio::spawn(async move {
            while let Some(event) = receiver.recv().await {
                latest
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(event.service.clone(), event);
            }
        });
        sender
    }

    pub fn snapshot(&self) -> Vec<Event> {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}
