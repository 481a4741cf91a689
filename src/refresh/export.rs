//! Refresh with today's export (`refresh --state PREV -o NEW INPUT... --key-col ID`): the
//! export is joined with the state by customer key ([`super::join`]) and read a second time
//! with the decisions merged in; new and changed customers are mapped, customers gone from
//! the export are dropped (or kept with `--keep-missing`).

use std::sync::Arc;

use super::checks::{changed_between_reads, check_drop, check_unchanged};
pub(super) use super::checks::{check, ExportColumns};
use super::stream::StateRows;
use super::{join, key, send_state, Common, Plan, RefreshError, Started};
use crate::error::Error;
use crate::input::{Position, ReadProgress};
use crate::output::{DirState, JobDescription, Schema};
use crate::pipeline::{self, Opened, Stage};
use crate::record::Hashed;

/// Opens the locked output, joins the export with the state (first read of the export), and
/// starts the thread that reads the export again with the decisions; `None` when `--resume`
/// found the run already complete.
///
/// # Errors
/// A refused drop, or I/O.
pub(super) fn start(
    c: Common<'_>,
    checked: ExportColumns,
    description: &JobDescription,
) -> Result<Option<Started>, Error> {
    let cfg = c.cfg;
    let key_col = cfg.key_col.clone().expect("checked by the caller");
    let job = c.job;
    let ExportColumns {
        columns,
        out_kept,
        key_idx,
    } = checked;
    let n_inputs = job.cfg.inputs.len();
    let mut sources: Vec<String> = job.cfg.inputs.iter().map(|f| f.given.clone()).collect();
    sources.push(cfg.state.url());
    let Opened { writer, dir, start } = job.writer(
        c.locked,
        Schema::new(cfg.mapping.output_kind(), &out_kept),
        sources,
    )?;
    if dir == DirState::Complete {
        return Ok(None);
    }
    let n_ids: Vec<u64> = columns.iter().map(|c| c.identities.len() as u64).collect();

    // Pass 1 over the export: partition it with the state and decide (bounded memory).
    let state_rows = c.state_rows;
    // Local outputs keep the scratch beside the dataset (same disk); an object-store output
    // uses the machine's temporary directory.
    let scratch_dir = crate::spill::scratch_dir(&job.cfg.out_dir, None, ".refresh-tmp", "refresh");
    let scratch = join::Scratch::create(scratch_dir)?;
    let mut file_rows = vec![0u64; n_inputs];
    let mut export_null_keys = 0u64;
    let joined = join::build(
        scratch.path(),
        &c.parts,
        &key_col,
        &c.policy,
        state_rows,
        cfg.partition_rows,
        |sink| {
            let (rx, reader, hasher) = pipeline::read_and_hash_sync(
                &job,
                &columns,
                Position::default(),
                Arc::new(ReadProgress::default()),
            );
            let mut result = Ok(());
            for r in rx.iter() {
                let c = &r;
                // An unreadable key is no null key: its customer would be taken for gone
                // (or, with --keep-missing, written twice).
                if let Some((row, _)) = c.bad_kept.iter().find(|(_, j)| *j == key_idx) {
                    result = Err(RefreshError::KeyUnreadable {
                        path: job.cfg.inputs[c.file].given.clone(),
                        row: c.first_row + *row as u64 + 1,
                        column: key_col.clone(),
                    }
                    .into());
                    break;
                }
                file_rows[c.file] += c.len as u64;
                let base: u64 = (0..c.file).map(|g| file_rows[g] * n_ids[g]).sum();
                let n = n_ids[c.file] as usize;
                let keys = &c.kept[key_idx];
                let names = &columns[c.file].identities;
                for k in 0..c.len {
                    let Some(key) = key::at(keys, k) else {
                        export_null_keys += (0..n)
                            .filter(|j| matches!(r.ids[k * n + j].hashed, Hashed::Ok(_)))
                            .count() as u64;
                        continue;
                    };
                    let row_ordinal = base + (c.first_row + k as u64) * n as u64;
                    let mut any = false;
                    for (j, (id, col)) in r.ids[k * n..(k + 1) * n].iter().zip(names).enumerate() {
                        if let Hashed::Ok(hash) = id.hashed {
                            any = true;
                            result = result.and_then(|()| {
                                sink(join::ExportIdentity {
                                    ordinal: row_ordinal + j as u64,
                                    key: &key,
                                    kind: id.kind,
                                    column: &col.name,
                                    hash: Some(hash),
                                })
                            });
                        }
                    }
                    if !any {
                        // The customer is present even without an identity to map.
                        result = result.and_then(|()| {
                            sink(join::ExportIdentity {
                                ordinal: row_ordinal,
                                key: &key,
                                kind: crate::record::IdentityKind::Email,
                                column: "",
                                hash: None,
                            })
                        });
                    }
                }
                if result.is_err() {
                    break;
                }
            }
            drop(rx);
            let hashed = hasher.join();
            reader.join()??;
            hashed?;
            result
        },
    )?;
    if let Some(signal) = job.run.interrupt.signal() {
        return Err(Error::Interrupted { signal });
    }
    check_unchanged(&job.cfg.inputs, description)?;
    check_drop(&joined, &key_col, cfg.max_drop_fraction, cfg.keep_missing)?;
    {
        let mut t = c.tally.lock().expect("tally lock");
        t.state_customers = joined.state_customers;
        t.missing_customers = joined.missing_customers;
        t.lost_ids = joined.lost_ids;
        t.state_null_key_rows = joined.null_key_rows;
        t.export_null_key_identities = export_null_keys;
    }
    let bases: Vec<u64> = (0..n_inputs)
        .map(|f| (0..f).map(|g| file_rows[g] * n_ids[g]).sum())
        .collect();

    // Pass 2: the export again, with the decisions merged back in order.
    let floor = if start.file >= n_inputs {
        bases.last().copied().unwrap_or(0)
            + file_rows.last().copied().unwrap_or(0) * n_ids.last().copied().unwrap_or(0)
    } else {
        bases[start.file] + start.row * n_ids[start.file]
    };
    let mut merged = joined.merge(floor)?;
    let (hashed_rx, reader, hasher) = pipeline::read_and_hash_sync(
        &job,
        &columns,
        start.min(Position {
            file: n_inputs,
            row: 0,
        }),
        Arc::clone(&c.read_progress),
    );
    let keep_missing = cfg.keep_missing;
    let inputs = job.cfg.inputs.clone();
    let description = description.clone();
    let out_names: Vec<String> = out_kept.iter().map(|(n, _)| n.clone()).collect();
    let Common {
        parts,
        policy,
        sinks,
        tally,
        state_night_ms,
        ..
    } = c;
    let producer = Stage::spawn("join", move || -> Result<(), Error> {
        let _scratch = scratch; // removed when this thread ends, however it ends
        for mut r in hashed_rx {
            let n = n_ids[r.file] as usize;
            let base = bases[r.file];
            let mut outcomes = vec![None; r.ids.len()];
            let mut plans = Vec::with_capacity(r.ids.len());
            for (i, id) in r.ids.iter().enumerate() {
                let Hashed::Ok(hash) = id.hashed else {
                    plans.push(Plan::Local);
                    continue;
                };
                let ordinal = base + r.first_row * n as u64 + i as u64;
                let row = r.first_row + (i / n.max(1)) as u64;
                let decided = merged.take(ordinal)?;
                if merged.orphans > 0 {
                    // A decision before this one was never asked for.
                    return Err(changed_between_reads(&inputs[r.file].given, row));
                }
                let row_key = key::at(&r.kept[key_idx], i / n.max(1));
                match (&decided, &row_key) {
                    (Some(d), Some(key))
                        if d.kind == id.kind
                            && d.hash == hash
                            && d.key == join::key_digest(key) => {}
                    // A null key is never joined: it has no decision.
                    (None, None) => {}
                    _ => return Err(changed_between_reads(&inputs[r.file].given, row)),
                }
                // No decision: a null key, which matches no customer of the state.
                let (plan, carried) = decided.map_or((Plan::New, None), |d| d.decision.split());
                outcomes[i] = carried;
                plans.push(plan);
            }
            r.outcomes = Some(outcomes);
            if !sinks.send(r, plans) {
                break;
            }
        }
        let hashed = hasher.join();
        reader.join()??;
        hashed?;
        if sinks.interrupt.is_triggered() {
            return Ok(());
        }
        check_unchanged(&inputs, &description)?;
        if merged.any_left()? {
            return Err(RefreshError::ExportChanged {
                path: inputs
                    .iter()
                    .map(|f| f.given.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                why: "it has fewer rows than in the first read".to_string(),
            }
            .into());
        }
        // Customers gone from today's export.
        let missing = &joined.missing;
        // State rows with a null key are never kept: they match no customer.
        tally.lock().expect("tally lock").dropped = joined.null_key_rows;
        if keep_missing {
            let skip = if start.file == n_inputs { start.row } else { 0 };
            let only = |row: u64| missing.binary_search(&row).is_ok();
            let how = StateRows::Carried {
                seen_ms: state_night_ms,
                only: &only,
            };
            send_state(&parts, n_inputs, skip, &out_names, &policy, how, &sinks)?;
        } else {
            tally.lock().expect("tally lock").dropped += missing.len() as u64;
        }
        Ok(())
    });
    Ok(Some(Started {
        columns,
        writer,
        producer,
    }))
}
