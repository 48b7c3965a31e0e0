//! `s.state` on the kernel's side: the run's [`StateStore`] (redb, in
//! `DATA_DIR/state.redb`; in memory for a kernel without a data directory),
//! opened by the first call, and the one conversion between scripting's
//! plain state types and the store's. The store's own thread does the I/O;
//! a stage's call is handed to it with its reply callback and never blocks
//! the Lua thread (only the first call waits for the file to open).

use std::path::PathBuf;
use std::sync::OnceLock;

use spindle_scripting::{
    StateAnswer, StateCall, StateCallOp, StateData, StateReply, StateScopeSpec,
};
use spindle_state::{StateKey, StateOp, StateResult, StateScope, StateStore, StateValue};

/// The store, opened once on first use.
#[derive(Debug, Default)]
pub(crate) struct LazyStore {
    /// `None`: in memory.
    path: Option<PathBuf>,
    store: OnceLock<Result<StateStore, String>>,
}

impl LazyStore {
    pub(crate) fn new(path: Option<PathBuf>) -> LazyStore {
        LazyStore {
            path,
            store: OnceLock::new(),
        }
    }

    /// The store, opening it on the first call; an error (another spindle
    /// holds the file) is kept and answered to every call.
    pub(crate) fn get(&self) -> Result<&StateStore, String> {
        self.store
            .get_or_init(|| {
                let config = match &self.path {
                    Some(path) => spindle_state::StateConfig::at(path),
                    None => spindle_state::StateConfig::in_memory(),
                };
                StateStore::open(config).map_err(|error| error.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// Sends a stage's call to the store; the reply comes on the store's thread.
pub(crate) fn call(store: &StateStore, call: StateCall, reply: StateReply) {
    let key = StateKey {
        scope: match call.scope {
            StateScopeSpec::Global => StateScope::Global,
            StateScopeSpec::Pipeline(name) => StateScope::Pipeline(name),
            StateScopeSpec::Request(id) => StateScope::Request(id),
        },
        key: call.key,
    };
    let op = match call.op {
        StateCallOp::Get => StateOp::Get,
        StateCallOp::Set { value, ttl } => StateOp::Set {
            value: value_of(value),
            ttl,
        },
        StateCallOp::CompareAndSwap { expected, new, ttl } => StateOp::CompareAndSwap {
            expected: expected.map(value_of),
            new: new.map(value_of),
            ttl,
        },
        StateCallOp::Increment { by, ttl } => StateOp::Increment { by, ttl },
        StateCallOp::Delete => StateOp::Delete,
        StateCallOp::List { limit } => StateOp::List { limit },
    };
    store.submit(
        key,
        op,
        Box::new(move |result| reply(result.map(answer_of).map_err(|error| error.to_string()))),
    );
}

fn value_of(data: StateData) -> StateValue {
    match data {
        StateData::Boolean(flag) => StateValue::Boolean(flag),
        StateData::Integer(number) => StateValue::Integer(number),
        StateData::Number(number) => StateValue::Number(number),
        StateData::String(text) => StateValue::String(text),
        StateData::Vector(vector) => StateValue::Vector(vector),
    }
}

fn data_of(value: StateValue) -> StateData {
    match value {
        StateValue::Boolean(flag) => StateData::Boolean(flag),
        StateValue::Integer(number) => StateData::Integer(number),
        StateValue::Number(number) => StateData::Number(number),
        StateValue::String(text) => StateData::String(text),
        StateValue::Vector(vector) => StateData::Vector(vector),
    }
}

fn answer_of(result: StateResult) -> StateAnswer {
    match result {
        StateResult::Value(value) => StateAnswer::Value(value.map(data_of)),
        StateResult::Swapped { swapped, current } => StateAnswer::Swapped {
            swapped,
            current: current.map(data_of),
        },
        StateResult::Integer(number) => StateAnswer::Integer(number),
        StateResult::Entries(entries) => StateAnswer::Entries(
            entries
                .into_iter()
                .map(|(key, value)| (key, data_of(value)))
                .collect(),
        ),
    }
}
