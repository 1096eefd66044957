//! References must resolve: to a resource in the manifests, or to something declared in
//! `External`. Secrets must exist, be encrypted, and (for SOPS) hold the named key.

use super::Context;
use crate::diag::{did_you_mean, Diagnostic, Diagnostics, ErrorKind, Location};
use crate::manifest::firewall::{Direction, Rule};
use crate::manifest::storage::DownloadContent;
use crate::manifest::template::ImageSource;
use crate::manifest::vm::{SnippetSource, TemplateRef};
use crate::manifest::{Kind, Origin, ResourceRef};
use crate::repo::resolve;
use crate::secret::SecretRef;
use std::collections::BTreeSet;

pub fn check(ctx: &Context<'_>, diags: &mut Diagnostics) {
    let r = Refs::new(ctx);
    for vm in &ctx.desired.vms {
        let at = |p: &str| vm.source.at(ctx.locator, p);
        let s = &vm.spec;
        if let Some(clone) = &s.clone {
            r.template(&clone.template, at("clone.template"), diags);
        }
        if let Some(ci) = &s.cloud_init {
            for (field, src) in ci.custom_data() {
                if let Some(src) = src {
                    r.snippet(src, at(&format!("cloudInit.{field}")), diags);
                }
            }
            if let Some(pw) = &ci.password {
                r.secret_ref(&vm.source.origin, pw, at("cloudInit.password"), diags);
            }
            if let Some(st) = &ci.storage {
                r.storage(st.as_str(), at("cloudInit.storage"), diags);
            }
        }
        if let Some(pool) = &s.pool {
            r.pool(pool.as_str(), at("pool"), diags);
        }
        if let Some(cd) = &s.cdrom {
            r.iso(
                cd.download.as_ref(),
                cd.volume.as_ref(),
                at("cdrom"),
                at("cdrom.download"),
                diags,
            );
        }
        for (i, dep) in vm.depends_on.iter().enumerate() {
            // Set-level dependsOn is written in the set spec, member-level in the template.
            let loc = if ctx.locator.contains(
                &vm.source.origin,
                &crate::source_map::YamlPath::parse(&format!("spec.dependsOn[{i}]")),
            ) && vm.member_of.is_some()
            {
                ctx.locator
                    .at(&vm.source.origin, &format!("spec.dependsOn[{i}]"))
            } else {
                at(&format!("dependsOn[{i}]"))
            };
            r.resource(dep, loc, diags);
        }
        r.node(vm.node.as_str(), at("node"), diags);
        for (i, d) in s.disks.iter().enumerate() {
            r.storage(
                d.storage.as_str(),
                at(&format!("disks[{i}].storage")),
                diags,
            );
        }
    }
    for c in &ctx.desired.containers {
        let at = |p: &str| ctx.locator.at(&c.origin, &format!("spec.{p}"));
        r.image(
            &c.spec.os_template,
            DownloadContent::Vztmpl,
            &c.origin,
            "spec.osTemplate",
            diags,
        );
        if let Some(pw) = &c.spec.password {
            r.secret_ref(&c.origin, pw, at("password"), diags);
        }
        if let Some(pool) = &c.spec.pool {
            r.pool(pool.as_str(), at("pool"), diags);
        }
        for (i, dep) in c.spec.depends_on.iter().enumerate() {
            r.resource(dep, at(&format!("dependsOn[{i}]")), diags);
        }
        r.node(c.spec.node.as_str(), at("node"), diags);
        r.storage(c.spec.rootfs.storage.as_str(), at("rootfs.storage"), diags);
    }
    for (doc, t) in docs_of!(ctx, Template) {
        r.image(
            &t.image,
            DownloadContent::Import,
            &doc.origin,
            "spec.image",
            diags,
        );
        r.node(
            t.node.as_str(),
            ctx.locator.at(&doc.origin, "spec.node"),
            diags,
        );
        r.storage(
            t.storage.as_str(),
            ctx.locator.at(&doc.origin, "spec.storage"),
            diags,
        );
    }
    for (doc, s) in docs_of!(ctx, Snippet) {
        if let Some(file) = &s.template_file {
            let loc = || ctx.locator.at(&doc.origin, "spec.templateFile");
            let name = doc.name();
            match resolve(&doc.origin.file, file) {
                None => diags.push(Diagnostic::new(
                    ErrorKind::UnreadableFile,
                    loc(),
                    format!(
                        "Snippet/{name}: template file `{file}` leaves the manifests directory"
                    ),
                )),
                Some(p) => match ctx.repo.problem(&p, true) {
                    None => {}
                    Some(why) => diags.push(Diagnostic::new(
                        if ctx.repo.exists(&p) {
                            ErrorKind::UnreadableFile
                        } else {
                            ErrorKind::UnresolvedReference
                        },
                        loc(),
                        format!("Snippet/{name}: template file `{file}` {why}"),
                    )),
                },
            }
        }
        for (name, secret) in &s.secrets {
            r.secret_ref(
                &doc.origin,
                secret,
                ctx.locator.at(&doc.origin, &format!("spec.secrets.{name}")),
                diags,
            );
        }
        r.storage(
            s.storage.as_str(),
            ctx.locator.at(&doc.origin, "spec.storage"),
            diags,
        );
    }
    for (doc, v) in docs_of!(ctx, SdnVnet) {
        r.named(
            Kind::SdnZone,
            v.zone.as_str(),
            None,
            ctx.locator.at(&doc.origin, "spec.zone"),
            diags,
        );
    }
    for (doc, s) in docs_of!(ctx, SdnSubnet) {
        r.named(
            Kind::SdnVnet,
            s.vnet.as_str(),
            None,
            ctx.locator.at(&doc.origin, "spec.vnet"),
            diags,
        );
    }
    for (doc, d) in docs_of!(ctx, StorageDownload) {
        if let crate::manifest::NodeSelector::List(nodes) = &d.nodes {
            for (i, n) in nodes.iter().enumerate() {
                r.node(
                    n.as_str(),
                    ctx.locator.at(&doc.origin, &format!("spec.nodes[{i}]")),
                    diags,
                );
            }
        }
        r.storage(
            d.storage.as_str(),
            ctx.locator.at(&doc.origin, "spec.storage"),
            diags,
        );
    }
    for (doc, fw) in docs_of!(ctx, Firewall) {
        if let Some(target) = &fw.target {
            let loc = ctx.locator.at(&doc.origin, "spec.target");
            if !target.kind.is_guest() || target.kind == Kind::Template {
                diags.push(Diagnostic::new(
                    ErrorKind::InvalidValue,
                    loc,
                    format!("a firewall target must be a VirtualMachine, VirtualMachineSet or Container, not {}", target.kind),
                ));
            } else {
                r.resource(target, loc, diags);
            }
        }
        let rule_lists = std::iter::once(("spec.rules".to_string(), &fw.rules)).chain(
            fw.security_groups
                .iter()
                .enumerate()
                .map(|(i, g)| (format!("spec.securityGroups[{i}].rules"), &g.rules)),
        );
        for (path, rules) in rule_lists {
            for (i, rule) in rules.iter().enumerate() {
                r.rule(rule, &doc.origin, &format!("{path}[{i}]"), diags);
            }
        }
    }
}

/// What exists, for reference checks.
struct Refs<'a> {
    ctx: &'a Context<'a>,
    security_groups: BTreeSet<String>,
    ipsets: BTreeSet<String>,
    aliases: BTreeSet<String>,
}

impl<'a> Refs<'a> {
    fn new(ctx: &'a Context<'a>) -> Self {
        let mut security_groups: BTreeSet<String> =
            ctx.external.security_groups.iter().cloned().collect();
        let mut ipsets: BTreeSet<String> = ctx.external.ipsets.iter().cloned().collect();
        let mut aliases: BTreeSet<String> = ctx.external.aliases.iter().cloned().collect();
        for (_, fw) in docs_of!(ctx, Firewall) {
            security_groups.extend(fw.security_groups.iter().map(|g| g.name.clone()));
            ipsets.extend(fw.ipsets.iter().map(|g| g.name.clone()));
            aliases.extend(fw.aliases.iter().map(|g| g.name.clone()));
        }
        Refs {
            ctx,
            security_groups,
            ipsets,
            aliases,
        }
    }

    fn names_of(&self, kind: Kind) -> Vec<&'a str> {
        self.ctx
            .docs
            .iter()
            .filter(|d| d.kind() == kind)
            .map(|d| d.name().as_str())
            .collect()
    }

    /// A reference to a resource of `kind`, or to an external name in `external`.
    fn named(
        &self,
        kind: Kind,
        name: &str,
        external: Option<(&str, &[&str])>,
        loc: Location,
        diags: &mut Diagnostics,
    ) {
        let managed = self.names_of(kind);
        if managed.contains(&name) || external.is_some_and(|(_, e)| e.contains(&name)) {
            return;
        }
        let mut candidates = managed.clone();
        let mut msg = format!("{kind} `{name}` is not declared");
        if let Some((field, e)) = external {
            candidates.extend_from_slice(e);
            msg.push_str(&format!(
                " (neither in the manifests nor in External.spec.{field})"
            ));
        }
        let mut d = Diagnostic::new(ErrorKind::UnresolvedReference, loc, msg);
        if let Some(s) = did_you_mean(name, candidates) {
            d = d.with_hint(format!("did you mean `{s}`?"));
        }
        diags.push(d);
    }

    fn template(&self, t: &TemplateRef, loc: Location, diags: &mut Diagnostics) {
        let known = self.ctx.external.templates.contains(t)
            || self.ctx.desired.templates.iter().any(|tpl| match t {
                TemplateRef::Name(n) => &tpl.name == n,
                TemplateRef::Vmid(v) => tpl.spec.vmid == *v,
            });
        if !known {
            let mut d = Diagnostic::new(
                ErrorKind::UnresolvedReference,
                loc,
                format!("template `{t}` is neither a Template in the manifests nor listed in External.spec.templates"),
            );
            let names: Vec<&str> = self
                .ctx
                .desired
                .templates
                .iter()
                .map(|t| t.name.as_str())
                .collect();
            if let Some(s) = did_you_mean(&t.to_string(), names) {
                d = d.with_hint(format!("did you mean `{s}`?"));
            }
            diags.push(d);
        }
    }

    fn snippet(&self, src: &SnippetSource, loc: Location, diags: &mut Diagnostics) {
        match src {
            SnippetSource::Snippet { snippet } => {
                self.named(Kind::Snippet, snippet.as_str(), None, loc, diags)
            }
            SnippetSource::Volume { volume } => {
                if !self.ctx.external.snippets.contains(volume) {
                    diags.push(Diagnostic::new(
                        ErrorKind::UnresolvedReference,
                        loc,
                        format!(
                            "snippet volume `{volume}` is not listed in External.spec.snippets"
                        ),
                    ));
                }
            }
        }
    }

    fn pool(&self, pool: &str, loc: Location, diags: &mut Diagnostics) {
        let ext: Vec<&str> = self.ctx.external.pools.iter().map(|p| p.as_str()).collect();
        self.named(Kind::Pool, pool, Some(("pools", &ext)), loc, diags);
    }

    fn node(&self, node: &str, loc: Location, diags: &mut Diagnostics) {
        let nodes: Vec<&str> = self.ctx.external.nodes.iter().map(|n| n.as_str()).collect();
        listed("node", "nodes", node, &nodes, loc, diags);
    }

    fn storage(&self, storage: &str, loc: Location, diags: &mut Diagnostics) {
        let storages: Vec<&str> = self
            .ctx
            .external
            .storages
            .iter()
            .map(|n| n.as_str())
            .collect();
        listed("storage", "storages", storage, &storages, loc, diags);
    }

    fn secret_ref(
        &self,
        origin: &Origin,
        secret: &SecretRef,
        loc: Location,
        diags: &mut Diagnostics,
    ) {
        super::secrets::check(self.ctx, origin, secret, loc, diags);
    }

    fn resource(&self, r: &ResourceRef, loc: Location, diags: &mut Diagnostics) {
        self.named(r.kind, r.name.as_str(), None, loc, diags);
    }

    /// A cloud image or OS template: exactly one source, and a download of the right content.
    fn image(
        &self,
        img: &ImageSource,
        want: DownloadContent,
        origin: &Origin,
        path: &str,
        diags: &mut Diagnostics,
    ) {
        let loc = self.ctx.locator.at(origin, path);
        match (&img.download, &img.volume) {
            (Some(name), None) => {
                let found = self
                    .ctx
                    .desired
                    .storage_downloads
                    .iter()
                    .find(|d| &d.name == name);
                match found {
                    None => self.named(
                        Kind::StorageDownload,
                        name.as_str(),
                        None,
                        self.ctx.locator.at(origin, &format!("{path}.download")),
                        diags,
                    ),
                    Some(d)
                        if d.spec.content != want
                            && !(want == DownloadContent::Import
                                && d.spec.content == DownloadContent::Iso) =>
                    {
                        diags.push(Diagnostic::new(
                            ErrorKind::InvalidValue,
                            self.ctx.locator.at(origin, &format!("{path}.download")),
                            format!(
                                "StorageDownload/{name} has content {:?}, expected {want:?}",
                                d.spec.content
                            )
                            .to_lowercase(),
                        ));
                    }
                    Some(_) => {}
                }
            }
            (None, Some(_)) => {}
            _ => diags.push(Diagnostic::new(
                ErrorKind::Conflict,
                loc,
                "give exactly one of `download` and `volume`",
            )),
        }
    }

    /// An ISO: exactly one of a `StorageDownload` with content `iso`, or a volume.
    fn iso(
        &self,
        download: Option<&crate::ids::Name>,
        volume: Option<&String>,
        loc: Location,
        download_loc: Location,
        diags: &mut Diagnostics,
    ) {
        match (download, volume) {
            (Some(name), None) => match self
                .ctx
                .desired
                .storage_downloads
                .iter()
                .find(|d| &d.name == name)
            {
                None => self.named(
                    Kind::StorageDownload,
                    name.as_str(),
                    None,
                    download_loc,
                    diags,
                ),
                Some(d) if d.spec.content != DownloadContent::Iso => diags.push(Diagnostic::new(
                    ErrorKind::InvalidValue,
                    download_loc,
                    format!(
                        "StorageDownload/{name} has content {:?}, a CD-ROM needs iso",
                        d.spec.content
                    )
                    .to_lowercase(),
                )),
                Some(_) => {}
            },
            (None, Some(_)) => {}
            _ => diags.push(Diagnostic::new(
                ErrorKind::Conflict,
                loc,
                "give exactly one of `download` and `volume`",
            )),
        }
    }

    fn rule(&self, rule: &Rule, origin: &Origin, path: &str, diags: &mut Diagnostics) {
        let at = |f: &str| self.ctx.locator.at(origin, &format!("{path}.{f}"));
        match rule.direction {
            Direction::Group => {
                if !self.security_groups.contains(&rule.action) {
                    let mut d = Diagnostic::new(
                        ErrorKind::UnresolvedReference,
                        at("action"),
                        format!("security group `{}` is not declared (in a Firewall or External.spec.securityGroups)", rule.action),
                    );
                    if let Some(s) = did_you_mean(
                        &rule.action,
                        self.security_groups.iter().map(String::as_str),
                    ) {
                        d = d.with_hint(format!("did you mean `{s}`?"));
                    }
                    diags.push(d);
                }
            }
            Direction::In | Direction::Out => {
                if !["ACCEPT", "DROP", "REJECT"].contains(&rule.action.as_str()) {
                    diags.push(
                        Diagnostic::new(
                            ErrorKind::InvalidValue,
                            at("action"),
                            format!("`{}` is not ACCEPT, DROP or REJECT", rule.action),
                        )
                        .with_hint("to insert a security group, use `direction: group`"),
                    );
                }
            }
        }
        for (field, value) in [("source", &rule.source), ("dest", &rule.dest)] {
            let Some(v) = value else { continue };
            for item in v.split(',') {
                let item = item.trim();
                if let Some(set) = item.strip_prefix('+') {
                    let set = set.strip_prefix("dc/").unwrap_or(set);
                    if !self.ipsets.contains(set) {
                        diags.push(Diagnostic::new(
                            ErrorKind::UnresolvedReference,
                            at(field),
                            format!("IP set `{set}` is not declared"),
                        ));
                    }
                } else if item.starts_with(|c: char| c.is_ascii_alphabetic()) && !item.contains(':')
                {
                    let alias = item.strip_prefix("dc/").unwrap_or(item);
                    if !self.aliases.contains(alias) {
                        diags.push(Diagnostic::new(
                            ErrorKind::UnresolvedReference,
                            at(field),
                            format!("alias `{alias}` is not declared"),
                        ));
                    }
                }
            }
        }
    }
}

/// Nodes and storages are checked only when `External` lists them (the cluster itself is
/// checked at plan time); then `value` must be one of `list`.
fn listed(
    what: &str,
    field: &str,
    value: &str,
    list: &[&str],
    loc: Location,
    diags: &mut Diagnostics,
) {
    if list.is_empty() || list.contains(&value) {
        return;
    }
    let mut d = Diagnostic::new(
        ErrorKind::UnresolvedReference,
        loc,
        format!("{what} `{value}` is not in External.spec.{field}"),
    );
    if let Some(s) = did_you_mean(value, list.iter().copied()) {
        d = d.with_hint(format!("did you mean `{s}`?"));
    }
    diags.push(d);
}
