//! Tests of `mod.rs`'s module.

use super::cache::*;
use super::*;
use crate::record::Hashed;

fn key(s: &str) -> Key {
    (IdentityKind::Email, crate::normalize::sha256(s.as_bytes()))
}

fn chunk(first_row: u64, values: &[&str]) -> IdentityChunk {
    IdentityChunk {
        file: 0,
        first_row,
        len: values.len(),
        per_row: 1,
        kept: Vec::new(),
        ids: values
            .iter()
            .map(|v| crate::record::Identity {
                kind: IdentityKind::Email,
                hashed: Hashed::Ok(key(v).1),
                phone_form: Default::default(),
            })
            .collect(),
        outcomes: None,
        origin: None,
        marks: None,
        slot_names: std::sync::Arc::from([]),
        bad_kept: Vec::new(),
    }
}

fn mapped(u: &str) -> MapOutcome {
    MapOutcome::Mapped {
        raw_euid: crate::record::RawId::from(u),
        previous: None,
        refresh_from: Some(1),
        bucket_id: None,
        mapped_at: 0,
    }
}

/// The raw ids of a finished chunk, in row order.
fn raw(c: &IdentityChunk) -> Vec<String> {
    c.outcomes
        .as_ref()
        .expect("finished")
        .iter()
        .map(|o| match o {
            Some(MapOutcome::Mapped { raw_euid, .. }) => raw_euid.to_string(),
            other => format!("{other:?}"),
        })
        .collect()
}

fn answer(batch: &[Key], names: &[&str]) -> Vec<MapOutcome> {
    batch
        .iter()
        .map(|k| {
            let n = names
                .iter()
                .find(|n| key(n) == *k)
                .expect("a known identity");
            mapped(&format!("U-{n}"))
        })
        .collect()
}

fn mapper(batch: usize, cache: usize) -> Mapper {
    Mapper::new(
        batch,
        cache * CACHE_ENTRY_BYTES,
        Arc::new(MapperStats::default()),
    )
}

/// `map --help` and README say what the default cache costs and holds.
#[test]
fn the_default_cache_holds_what_the_help_says() {
    assert_eq!(
        crate::mapper::CACHE_ENTRY_BYTES,
        144,
        "the help says 144 bytes"
    );
    let answers = DEFAULT_DEDUPE_MIB * (1 << 20) / crate::mapper::CACHE_ENTRY_BYTES;
    assert!(
        (225_000..=235_000).contains(&answers),
        "the help says about 230,000: {answers}"
    );
}

#[test]
fn batches_completing_out_of_order_release_chunks_in_input_order() {
    let mut m = mapper(2, 100);
    m.accept(chunk(0, &["a", "b"]));
    m.accept(chunk(2, &["c", "d"]));
    let first = m.next_batch(false).expect("full batch");
    let second = m.next_batch(false).expect("full batch");
    m.complete(second.clone(), answer(&second, &["c", "d"]))
        .expect("one answer each");
    assert!(m.pop_finished().is_none(), "the first chunk still waits");
    m.complete(first.clone(), answer(&first, &["a", "b"]))
        .expect("one answer each");
    let a = m.pop_finished().expect("first chunk");
    let b = m.pop_finished().expect("second chunk");
    assert_eq!((a.first_row, b.first_row), (0, 2));
    assert_eq!(raw(&a), ["U-a", "U-b"]);
    assert_eq!(raw(&b), ["U-c", "U-d"]);
    assert!(m.is_idle());
}

#[test]
fn a_duplicate_is_sent_once_and_answered_for_every_row() {
    let mut m = mapper(10, 100);
    m.accept(chunk(0, &["a", "b", "a"]));
    m.accept(chunk(3, &["a"]));
    let batch = m.next_batch(true).expect("partial batch at end of input");
    assert_eq!(batch.len(), 2, "a is in flight once");
    m.complete(batch.clone(), answer(&batch, &["a", "b"]))
        .expect("ok");
    assert_eq!(raw(&m.pop_finished().expect("done")), ["U-a", "U-b", "U-a"]);
    assert_eq!(raw(&m.pop_finished().expect("done")), ["U-a"]);
    m.accept(chunk(4, &["b"]));
    assert!(m.next_batch(true).is_none(), "b comes from the cache");
    assert_eq!(raw(&m.pop_finished().expect("done")), ["U-b"]);
}

#[test]
fn an_evicted_duplicate_is_sent_again_not_lost() {
    let mut m = mapper(1, 1); // a cache of one slot: each answer replaces the last
    for (row, name) in ["a", "b", "c"].into_iter().enumerate() {
        m.accept(chunk(row as u64, &[name]));
        let batch = m.next_batch(false).expect("full batch of one");
        m.complete(batch.clone(), answer(&batch, &[name]))
            .expect("ok");
        m.pop_finished().expect("done");
    }
    m.accept(chunk(3, &["c"]));
    assert!(m.next_batch(true).is_none(), "c is still cached");
    m.pop_finished().expect("from cache");
    m.accept(chunk(4, &["a"]));
    let again = m
        .next_batch(true)
        .expect("a was evicted, so it is sent again");
    assert_eq!(again, vec![key("a")]);
    m.complete(again.clone(), answer(&again, &["a"]))
        .expect("ok");
    assert_eq!(raw(&m.pop_finished().expect("done")), ["U-a"]);
}

#[test]
fn the_cache_keeps_what_fits_and_never_answers_for_another_key() {
    let mut c = Cache::new(1000);
    let answers: Vec<(Key, MapOutcome)> = (0..5000)
        .map(|i| (key(&format!("id{i}")), mapped(&format!("U{i}"))))
        .collect();
    for (k, v) in &answers {
        c.insert(*k, v.clone());
    }
    assert!(c.entries.len() <= 1000, "one entry per slot at most");
    let mut hits = 0;
    for (k, v) in &answers {
        if let Some(found) = c.get(k) {
            assert_eq!(found, v, "a hit is the answer of that very key");
            hits += 1;
        }
    }
    assert!(
        (500..=1000).contains(&hits),
        "most slots hold a recent answer: {hits}"
    );
    let phone = (IdentityKind::Phone, answers[4999].0 .1);
    assert!(
        c.get(&phone).is_none(),
        "the same hash of the other kind is another key"
    );
    assert!(Cache::new(0).get(&answers[0].0).is_none());
}

#[test]
fn a_cache_that_never_hits_remembers_a_sample_and_recovers_when_repeats_come() {
    let mut c = Cache::new(1 << 20);
    let k = |i: u32| key(&format!("u{i}"));
    for i in 0..2 * ADMISSION_PERIOD {
        assert!(c.get(&k(i)).is_none());
        c.insert(k(i), mapped("U"));
        if i == ADMISSION_PERIOD {
            assert!(
                !c.sparse,
                "not judged before the cache holds a period's worth"
            );
        }
    }
    assert!(c.sparse, "no hit in a whole period");
    let before = c.entries.len();
    for i in 2 * ADMISSION_PERIOD..2 * ADMISSION_PERIOD + 1600 {
        c.insert(k(i), mapped("U"));
    }
    let added = c.entries.len() - before;
    // One in 16 of 1,600 is 100; a few of them replace an answer already in their slot.
    assert!(
        (85..=100).contains(&added),
        "one answer in 16 is remembered: {added}"
    );
    // Repeats of what was remembered: hits turn the cache back to remembering all.
    for i in 0..ADMISSION_PERIOD {
        let _ = c.get(&k(i % 4096));
    }
    assert!(!c.sparse, "repeats hit the sample");
}

#[test]
fn a_failed_batch_marks_its_rows_failed_and_is_not_cached() {
    let mut m = mapper(5, 100);
    m.accept(chunk(0, &["a", "a"]));
    let batch = m.next_batch(true).expect("batch");
    let failed = MapOutcome::Failed(Arc::from("operator error (HTTP 503)"));
    m.complete(batch, vec![failed.clone()]).expect("ok");
    let done = m.pop_finished().expect("done");
    assert_eq!(
        done.outcomes.expect("answered"),
        vec![Some(failed.clone()), Some(failed)]
    );
    m.accept(chunk(2, &["a"]));
    assert!(
        m.next_batch(true).is_some(),
        "a failure is not remembered: the next occurrence is tried again"
    );
}

#[test]
fn the_reorder_window_is_bounded_and_flushes_partial_batches_when_full() {
    let mut m = mapper(crate::protocol::MAX_ITEMS_PER_REQUEST, 100);
    for i in 0..PENDING_CHUNKS {
        assert!(m.can_accept(20));
        m.accept(chunk(i as u64, &[&format!("id{i}")]));
    }
    assert!(!m.can_accept(20), "the window is full");
    let batch = m
        .next_batch(false)
        .expect("a full window sends its partial batch");
    assert_eq!(batch.len(), PENDING_CHUNKS);
}

#[test]
fn a_window_of_carried_rows_fills_a_batch_before_sending_it() {
    // A refresh chunk: 30,000 rows carried from the state, two of them due.
    let carried = |seq: u64| {
        let mut c = chunk(seq * 30_000, &vec!["carried"; 30_000]);
        let mut outcomes = vec![Some(mapped("U-carried")); 30_000];
        outcomes[0] = None;
        outcomes[1] = None;
        c.ids[0].hashed = Hashed::Ok(key(&format!("due{seq}-0")).1);
        c.ids[1].hashed = Hashed::Ok(key(&format!("due{seq}-1")).1);
        c.outcomes = Some(outcomes);
        c
    };
    let mut m = mapper(MAX_BATCH, 0);
    let mut seq = 0;
    while m.can_accept(20) {
        m.accept(carried(seq));
        seq += 1;
    }
    let held = seq as usize * 30_000;
    assert!(
        held > PENDING_IDENTITIES && held <= PENDING_IDENTITIES_SPARSE + 30_000,
        "with few identities waiting the window holds more than {PENDING_IDENTITIES}: {held}"
    );
    let batch = m
        .next_batch(false)
        .expect("the full window sends its partial batch");
    assert_eq!(
        batch.len(),
        2 * seq as usize,
        "every due identity of the window in one batch"
    );
    // Many identities waiting: the usual bound applies.
    let mut m = mapper(MAX_BATCH, 0);
    let fresh: Vec<String> = (0..60_000).map(|i| format!("f{i}")).collect();
    let fresh: Vec<&str> = fresh.iter().map(String::as_str).collect();
    let mut chunks = 0;
    while m.can_accept(20) {
        m.accept(chunk(chunks * 60_000, &fresh));
        chunks += 1;
    }
    assert_eq!(chunks as usize, PENDING_IDENTITIES.div_ceil(60_000));
}

#[test]
fn a_chunk_waiting_for_its_last_batch_does_not_stall_the_requests() {
    // Chunks of 30,000 unique emails: six batches each.
    let mut m = mapper(MAX_BATCH, 0);
    let mut chunks = 0u64;
    let mut take = |m: &mut Mapper| {
        let names: Vec<String> = (0..30_000).map(|i| format!("c{chunks}-{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        m.accept(chunk(chunks * 30_000, &names));
        chunks += 1;
    };
    while m.can_accept(100) {
        take(&mut m);
    }
    let mut batches = Vec::new();
    while let Some(b) = m.next_batch(false) {
        batches.push(b);
    }
    assert_eq!(batches.len(), PENDING_IDENTITIES / MAX_BATCH, "all sent");
    // Everything is answered but the oldest chunk's first and last batches.
    for (i, b) in batches.into_iter().enumerate() {
        if i != 0 && i != 5 {
            let n = b.len();
            m.complete(b, vec![mapped("U"); n]).expect("ok");
        }
    }
    assert!(m.pop_finished().is_none(), "the oldest chunk still waits");
    assert!(
        m.can_accept(100),
        "the next chunk is taken while the oldest waits"
    );
    let mut more = 0;
    while m.can_accept(100) {
        take(&mut m);
        more += 1;
    }
    assert!(m.next_batch(false).is_some_and(|b| b.len() == MAX_BATCH));
    let held = m.pending_ids;
    assert!(
        more >= 1 && held <= WINDOW_IDENTITIES + 30_000,
        "a chunk of room, no more: {more} chunks taken, {held} identities held"
    );
}

#[test]
fn a_full_window_waits_for_answers_in_flight_rather_than_sending_a_partial_batch() {
    let mut m = mapper(2, 0);
    m.accept(chunk(0, &["a", "b"]));
    let sent = m.next_batch(false).expect("a full batch");
    for i in 1..PENDING_CHUNKS {
        m.accept(chunk(i as u64 * 2, &[&format!("x{i}")]));
        let _ = m.next_batch(false);
    }
    assert!(!m.can_accept(20), "the window is full");
    assert!(
        m.next_batch(false).is_none(),
        "the oldest chunk waits only for the batch in flight: no partial batch"
    );
    m.complete(sent.clone(), answer(&sent, &["a", "b"]))
        .expect("ok");
    assert_eq!(raw(&m.pop_finished().expect("done")), ["U-a", "U-b"]);
    assert!(m.can_accept(20), "its answers freed the window");
}

/// Issue #9.4: answers are never zipped onto identities when their count is off.
#[test]
fn answers_of_the_wrong_count_are_an_error_not_a_shift() {
    let mut m = mapper(10, 100);
    m.accept(chunk(0, &["a", "b"]));
    let batch = m.next_batch(true).expect("batch");
    assert!(m.complete(batch, vec![mapped("U")]).is_err());
    assert!(m.pop_finished().is_none(), "nothing was assigned");
}
