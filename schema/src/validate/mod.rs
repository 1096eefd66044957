//! Whole-revision validation: every check runs and every problem is reported, each with the
//! position of the value at fault.
//!
//! - [`names`]: duplicate names and vmids;
//! - [`refs`]: references to templates, snippets, vnets, pools, secrets, nodes, storages;
//! - [`network`]: IP collisions, addresses outside their subnet, bridges;
//! - [`graph`]: dependency cycles (explicit `dependsOn` and implicit edges);
//! - [`consistency`]: sizes PVE cannot satisfy and settings that contradict each other.

/// The documents of one kind with their specs: `docs_of!(ctx, SdnVnet)`.
macro_rules! docs_of {
    ($ctx:expr, $kind:ident) => {
        $ctx.of(|s| match s {
            $crate::manifest::Spec::$kind(t) => Some(t),
            _ => None,
        })
    };
}

pub mod consistency;
pub mod graph;
pub mod names;
pub mod network;
pub mod policy;
pub mod refs;
pub mod secrets;

use crate::desired::DesiredState;
use crate::diag::Diagnostics;
use crate::manifest::misc::ExternalSpec;
use crate::manifest::{Document, Locator, Spec};
use crate::repo::Repository;

/// Everything a check may need.
pub struct Context<'a> {
    pub docs: &'a [Document],
    pub desired: &'a DesiredState,
    pub repo: &'a Repository,
    pub locator: &'a Locator,
    /// All `External` declarations merged.
    pub external: ExternalSpec,
}

impl<'a> Context<'a> {
    pub fn new(
        docs: &'a [Document],
        desired: &'a DesiredState,
        repo: &'a Repository,
        locator: &'a Locator,
    ) -> Self {
        let mut external = ExternalSpec::default();
        for d in docs {
            if let Spec::External(e) = &d.spec {
                external.templates.extend(e.templates.iter().cloned());
                external.bridges.extend(e.bridges.iter().cloned());
                external.pools.extend(e.pools.iter().cloned());
                external.snippets.extend(e.snippets.iter().cloned());
                external
                    .security_groups
                    .extend(e.security_groups.iter().cloned());
                external.ipsets.extend(e.ipsets.iter().cloned());
                external.aliases.extend(e.aliases.iter().cloned());
                external.nodes.extend(e.nodes.iter().cloned());
                external.storages.extend(e.storages.iter().cloned());
            }
        }
        Context {
            docs,
            desired,
            repo,
            locator,
            external,
        }
    }

    /// Documents of one kind with their specs.
    pub fn of<'b, T: 'b>(
        &'b self,
        pick: impl Fn(&'b Spec) -> Option<&'b T> + 'b,
    ) -> impl Iterator<Item = (&'b Document, &'b T)> + 'b {
        self.docs
            .iter()
            .filter_map(move |d| pick(&d.spec).map(|s| (d, s)))
    }
}

/// Run every check.
pub fn validate(ctx: &Context<'_>, diags: &mut Diagnostics) {
    names::check(ctx, diags);
    refs::check(ctx, diags);
    network::check(ctx, diags);
    graph::check(ctx, diags);
    consistency::check(ctx, diags);
    policy::check(ctx, diags);
}
