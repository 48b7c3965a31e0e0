//! The store against a real redb file: values survive reopening; many
//! threads racing compare-and-swap lose no update; expired keys are absent
//! at once and gone from disk after the sweep; listing by prefix stays in
//! its scope.

use std::sync::Arc;
use std::time::Duration;

use spindle_state::{
    ManualClock, StateConfig, StateKey, StateOp, StateResult, StateScope, StateStore, StateValue,
};

fn get(store: &StateStore, key: &StateKey) -> Option<StateValue> {
    match store.call(key.clone(), StateOp::Get).expect("get") {
        StateResult::Value(value) => value,
        other => panic!("get answered {other:?}"),
    }
}

#[test]
fn values_survive_reopening_the_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.redb");
    let key = StateKey::global("answer");
    {
        let store = StateStore::open(StateConfig::at(&path)).expect("opens");
        store
            .call(
                key.clone(),
                StateOp::Set {
                    value: StateValue::Vector(vec![0.5, 0.25]),
                    ttl: None,
                },
            )
            .expect("set");
    }
    // The thread ends with its last handle; the file is free again.
    let reopened = loop {
        match StateStore::open(StateConfig::at(&path)) {
            Ok(store) => break store,
            Err(_) => std::thread::yield_now(),
        }
    };
    assert_eq!(
        get(&reopened, &key),
        Some(StateValue::Vector(vec![0.5, 0.25]))
    );
}

#[test]
fn racing_compare_and_swap_loses_no_update() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = StateStore::open(StateConfig::at(dir.path().join("state.redb"))).expect("opens");
    let key = StateKey::global("counter");
    let threads = 8;
    let per_thread = 50;
    let mut handles = Vec::new();
    for _ in 0..threads {
        let store = store.clone();
        let key = key.clone();
        handles.push(std::thread::spawn(move || {
            let mut retries = 0;
            for _ in 0..per_thread {
                let mut seen = get(&store, &key);
                loop {
                    let next = match &seen {
                        Some(StateValue::Integer(n)) => n + 1,
                        _ => 1,
                    };
                    match store
                        .call(
                            key.clone(),
                            StateOp::CompareAndSwap {
                                expected: seen.clone(),
                                new: Some(StateValue::Integer(next)),
                                ttl: None,
                            },
                        )
                        .expect("cas")
                    {
                        StateResult::Swapped { swapped: true, .. } => break,
                        StateResult::Swapped { current, .. } => {
                            retries += 1;
                            seen = current;
                        }
                        other => panic!("cas answered {other:?}"),
                    }
                }
            }
            retries
        }));
    }
    let retries: u32 = handles.into_iter().map(|h| h.join().expect("thread")).sum();
    assert_eq!(
        get(&store, &key),
        Some(StateValue::Integer(threads * per_thread)),
        "after {retries} lost races"
    );
}

#[test]
fn expired_keys_are_absent_at_once_and_swept_from_disk() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.redb");
    let clock = ManualClock::new(1_000_000);
    let store = StateStore::open(StateConfig {
        path: Some(path.clone()),
        clock: Arc::new(clock.clone()),
    })
    .expect("opens");
    let short = StateKey::global("short");
    let long = StateKey::global("long");
    for (key, ttl) in [(&short, 100), (&long, 10_000)] {
        store
            .call(
                key.clone(),
                StateOp::Set {
                    value: StateValue::Boolean(true),
                    ttl: Some(Duration::from_millis(ttl)),
                },
            )
            .expect("set");
    }
    store
        .call(
            StateKey::global("counter"),
            StateOp::Increment {
                by: 2,
                ttl: Some(Duration::from_millis(100)),
            },
        )
        .expect("incr");
    assert_eq!(get(&store, &short), Some(StateValue::Boolean(true)));
    clock.advance_ms(100);
    assert_eq!(get(&store, &short), None, "expired at its ttl");
    assert_eq!(get(&store, &long), Some(StateValue::Boolean(true)));
    // An expired counter starts again from zero.
    assert_eq!(
        store
            .call(
                StateKey::global("counter"),
                StateOp::Increment { by: 1, ttl: None }
            )
            .expect("incr"),
        StateResult::Integer(1)
    );
    match store
        .call(StateKey::global(""), StateOp::List { limit: 10 })
        .expect("list")
    {
        StateResult::Entries(entries) => {
            let keys: Vec<&str> = entries.iter().map(|(key, _)| key.as_str()).collect();
            assert_eq!(keys, ["counter", "long"]);
        }
        other => panic!("{other:?}"),
    }
    // Still on disk until the sweep (every second, or now).
    assert_eq!(store.stored_entries().expect("count"), 3);
    assert_eq!(store.sweep().expect("sweep"), 1);
    assert_eq!(store.stored_entries().expect("count"), 2);
}

#[test]
fn listing_stays_inside_its_scope() {
    let store = StateStore::open(StateConfig::in_memory()).expect("opens");
    let scoped = |scope: StateScope, key: &str| StateKey {
        scope,
        key: key.to_owned(),
    };
    for key in [
        scoped(StateScope::Pipeline("a".into()), "doc:1"),
        scoped(StateScope::Pipeline("a".into()), "doc:2"),
        scoped(StateScope::Pipeline("a".into()), "other"),
        scoped(StateScope::Pipeline("ab".into()), "doc:3"),
        scoped(StateScope::Global, "doc:4"),
    ] {
        store
            .call(
                key,
                StateOp::Set {
                    value: StateValue::Integer(1),
                    ttl: None,
                },
            )
            .expect("set");
    }
    match store
        .call(
            scoped(StateScope::Pipeline("a".into()), "doc:"),
            StateOp::List { limit: 10 },
        )
        .expect("list")
    {
        StateResult::Entries(entries) => {
            let keys: Vec<&str> = entries.iter().map(|(key, _)| key.as_str()).collect();
            assert_eq!(keys, ["doc:1", "doc:2"]);
        }
        other => panic!("{other:?}"),
    }
}
