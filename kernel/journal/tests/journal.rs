//! The journal on disk: everything written is read back in order; a write
//! cut at any byte loses only the cut record; segments rotate by size and
//! the oldest are deleted; a full channel makes senders wait (counted), it
//! never drops.

use spindle_journal::{
    Admitted, Journal, JournalConfig, JournalReader, OperationRecord, Record, segments,
};

fn admitted(id: u64) -> Record {
    Record::Admitted(Admitted {
        id,
        correlation_id: format!("c-{id}"),
        pipeline: "ingest".into(),
        priority: "medium".into(),
        source: "scenario".into(),
        deadline_us: None,
        text: format!("sentence number {id} with some words in it"),
        at_us: id,
    })
}

fn config(dir: &std::path::Path) -> JournalConfig {
    let mut config = JournalConfig::new(dir);
    config.run_id = "run-a".into();
    config.script = "/x/graph.lua".into();
    config
}

#[tokio::test]
async fn records_come_back_in_order_across_rotated_segments() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = config(dir.path());
    config.max_segment_bytes = 4096;
    let journal = Journal::start(config).expect("starts");
    for id in 0..500 {
        journal.record(admitted(id)).await;
    }
    journal.flush().await;
    let stats = journal.stats();
    assert_eq!(stats.records, 500);
    assert!(stats.segments > 5, "{stats:?}");
    let read = JournalReader::open(dir.path()).expect("reads");
    let ids: Vec<u64> = read
        .records
        .iter()
        .filter_map(|record| match record {
            Record::Admitted(admitted) => Some(admitted.id),
            _ => None,
        })
        .collect();
    assert_eq!(ids, (0..500).collect::<Vec<_>>());
    assert!(read.report.torn_tail.is_none());
    assert!(read.report.problems.is_empty());
    // Every segment starts with its header.
    let headers = read
        .records
        .iter()
        .filter(|record| matches!(record, Record::Header(_)))
        .count();
    assert_eq!(headers as u64, stats.segments);
}

#[tokio::test]
async fn a_write_cut_at_any_byte_loses_only_the_last_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let journal = Journal::start(config(dir.path())).expect("starts");
    for id in 0..3 {
        journal.record(admitted(id)).await;
    }
    journal.flush().await;
    drop(journal);
    let segment = segments(dir.path()).expect("segments").remove(0).path;
    let whole = std::fs::read(&segment).expect("read");
    let read = JournalReader::open(&segment).expect("reads");
    assert_eq!(read.records.len(), 4, "header and three requests");
    // The frame boundaries: a cut exactly on one leaves a clean, shorter
    // file; a cut anywhere else is a torn tail.
    let mut boundaries = vec![spindle_journal::codec::MAGIC.len()];
    let mut offset = boundaries[0];
    while let spindle_journal::codec::Frame::Record(_, used) =
        spindle_journal::codec::decode_frame(&whole[offset..])
    {
        offset += used;
        boundaries.push(offset);
    }
    assert_eq!(offset, whole.len());
    let header_end = boundaries[1];
    let mut counts = Vec::new();
    for cut in (header_end..whole.len()).rev() {
        std::fs::write(&segment, &whole[..cut]).expect("write");
        let read = JournalReader::open(&segment).expect("reads a torn file");
        counts.push(read.records.len());
        let whole_frames = boundaries.iter().filter(|&&end| end <= cut).count() - 1;
        assert_eq!(read.records.len(), whole_frames, "cut at {cut}");
        match read.report.torn_tail {
            Some(torn) => {
                assert!(!boundaries.contains(&cut), "cut at {cut}");
                assert_eq!(torn.offset + torn.bytes, cut as u64);
                assert_eq!(torn.offset as usize, boundaries[whole_frames]);
            }
            None => assert!(boundaries.contains(&cut), "cut at {cut} not reported"),
        }
    }
    // Cut by cut, the record count falls one at a time: nothing before the
    // cut record is ever lost.
    counts.dedup();
    assert_eq!(counts, vec![3, 2, 1]);
}

#[tokio::test]
async fn a_full_channel_makes_senders_wait_and_nothing_is_dropped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = config(dir.path());
    config.channel = 1;
    config.sync = true;
    let journal = Journal::start(config).expect("starts");
    let mut tasks = Vec::new();
    for task in 0..4_u64 {
        let journal = journal.clone();
        tasks.push(tokio::spawn(async move {
            for id in 0..200 {
                journal
                    .record(Record::Operation(OperationRecord {
                        at_us: id,
                        operation: "cancel".into(),
                        target: format!("{task}-{id}"),
                        count: 0,
                        delay_us: 0,
                    }))
                    .await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("sender");
    }
    journal.flush().await;
    let stats = journal.stats();
    assert_eq!(stats.records, 800);
    assert!(
        stats.waits > 0,
        "a channel of one made someone wait: {stats:?}"
    );
    let read = JournalReader::open(dir.path()).expect("reads");
    assert_eq!(read.records.len(), 801);
}

#[tokio::test]
async fn old_segments_beyond_the_limit_are_deleted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = config(dir.path());
    config.max_segment_bytes = 1024;
    config.max_segments = 3;
    let journal = Journal::start(config).expect("starts");
    for id in 0..300 {
        journal.record(admitted(id)).await;
    }
    journal.flush().await;
    let kept = segments(dir.path()).expect("segments");
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert!(kept[0].number > 1);
}
