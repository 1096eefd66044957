//! `pve-gitops doctor`.

use crate::cli::DoctorArgs;
use anyhow::Result;

pub fn doctor_command(_args: &DoctorArgs) -> Result<i32> {
    anyhow::bail!("not yet")
}
