//! `pve-gitops doctor`: can this node's agent work? Every check the agent's first pass
//! would trip over, run one by one with the settings `run --config` uses, printed as a
//! table; exit status 1 when any fails.
//!
//! | check | how |
//! |---|---|
//! | config | the file parses (file:line:col otherwise) |
//! | api | `GET /version`: reachable, certificate verified against the CA or pin |
//! | token | the same answer: PVE accepted the token |
//! | privileges | `GET /access/permissions?path=/` holds [`crate::access::privileges::required`] |
//! | clock | `GET /nodes/{node}/time` of every online node within [`MAX_SKEW`] of this one |
//! | repository | a poll through `crate::source` (host key pinned, credentials, branch) |
//! | manifests | the head's cluster directory is valid |
//! | secrets | the identities decrypt every secret it references (as `crate::revision`) |
//! | lock | a probe directory can be made and removed beside the lease's lock |
//!
//! A check that depends on a failed one is skipped. Nothing is written to PVE or to the
//! repository, and the real lock is only looked at.

mod checks;

use crate::cli::DoctorArgs;
use anyhow::Result;
use std::fmt::Write;
use std::time::Duration;

/// The largest clock difference between this node and another that passes.
pub const MAX_SKEW: Duration = Duration::from_secs(10);

/// How a check came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass(String),
    Fail(String),
    /// Not run: a check it depends on failed.
    Skip(String),
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
}

impl Check {
    pub fn passed(&self) -> bool {
        matches!(self.verdict, Verdict::Pass(_))
    }
}

/// `pve-gitops doctor` on the terminal.
pub fn doctor_command(args: &DoctorArgs) -> Result<i32> {
    let results = checks::run(args)?;
    print!("{}", table(&results));
    Ok(if results.iter().all(Check::passed) {
        0
    } else {
        1
    })
}

/// The results as a table an operator reads: `CHECK  RESULT  DETAIL`.
pub fn table(results: &[Check]) -> String {
    let width = results
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!("{:width$}  RESULT  DETAIL\n", "CHECK");
    for c in results {
        let (word, detail) = match &c.verdict {
            Verdict::Pass(d) => ("pass", d),
            Verdict::Fail(d) => ("FAIL", d),
            Verdict::Skip(d) => ("skip", d),
        };
        let mut lines = detail.lines();
        let _ = writeln!(
            out,
            "{:width$}  {word:6}  {}",
            c.name,
            lines.next().unwrap_or("")
        );
        for more in lines {
            let _ = writeln!(out, "{:width$}  {:6}  {more}", "", "");
        }
    }
    let failed = results.iter().filter(|c| !c.passed()).count();
    let _ = match failed {
        0 => writeln!(out, "all {} checks passed", results.len()),
        n => writeln!(out, "{n} of {} checks did not pass", results.len()),
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_and_counts() {
        let t = table(&[
            Check {
                name: "api",
                verdict: Verdict::Pass("reachable".into()),
            },
            Check {
                name: "privileges",
                verdict: Verdict::Fail("missing on /: VM.Clone\nsee README".into()),
            },
            Check {
                name: "clock",
                verdict: Verdict::Skip("needs the token".into()),
            },
        ]);
        assert_eq!(
            t,
            "CHECK       RESULT  DETAIL\n\
             api         pass    reachable\n\
             privileges  FAIL    missing on /: VM.Clone\n\
             \x20                   see README\n\
             clock       skip    needs the token\n\
             2 of 3 checks did not pass\n"
        );
    }
}
