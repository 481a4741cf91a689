//! Refresh without today's export (`refresh --state PREV -o NEW`): the state streams through
//! part by part; rows that are due are mapped again, every other row is carried as it is.

use super::stream::StateRows;
use super::{send_state, Common, Started};
use crate::error::Error;
use crate::output::{DirState, OutputKind, Schema};
use crate::pipeline::{Opened, Stage};

/// Opens the output and starts the thread that streams the state; `None` when `--resume`
/// found the run already complete.
///
/// # Errors
/// The output cannot be opened (busy, other job, I/O).
pub(super) fn start(c: Common<'_>) -> Result<Option<Started>, Error> {
    let Opened { writer, dir, start } = c.job.writer(
        c.locked,
        Schema::new(
            if c.lookup {
                OutputKind::Lookup
            } else {
                c.cfg.mapping.output_kind()
            },
            &c.kept,
        ),
        vec![c.cfg.state.url()],
    )?;
    if dir == DirState::Complete {
        return Ok(None);
    }
    let kept_names: Vec<String> = c.kept.iter().map(|(n, _)| n.clone()).collect();
    let Common {
        parts,
        policy,
        sinks,
        ..
    } = c;
    let producer = Stage::spawn("state", move || {
        send_state(
            &parts,
            0,
            start.row,
            &kept_names,
            &policy,
            StateRows::AsTheyAre,
            &sinks,
        )
    });
    Ok(Some(Started {
        columns: Vec::new(),
        writer,
        producer,
    }))
}
