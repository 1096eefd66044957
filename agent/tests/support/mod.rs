//! Helpers shared by the integration tests (each test file includes this with `mod support;`).
// Each test binary uses a different subset of the helpers.
#![allow(dead_code)]

/// A fake cluster for this test (`fake!()`, `fake!(options)`, or `fake!(with_template)`
/// for [`FakePve::with_template`]), or return from the test, skipped with a loud message,
/// when python3 is missing.
#[allow(unused_macros)]
macro_rules! fake {
    () => {
        fake!(Options::default())
    };
    (with_template) => {
        match FakePve::with_template().await {
            Some(pve) => pve,
            None => return,
        }
    };
    ($options:expr) => {
        match FakePve::start($options) {
            Some(pve) => pve,
            None => return,
        }
    };
}

pub mod agent;
pub mod agents;
pub mod chaos;
pub mod control;
pub mod corpus;
pub mod examples;
pub mod fakepve;
pub mod git;
pub mod https_git;
pub mod manifests;
pub mod pass;
pub mod relay;
pub mod scale;
pub mod sshd;
