//! The git source against real repositories: bare remotes made with the `git` CLI, reached
//! over `file://` and over SSH from an sshd started on a loopback port.

mod support;

use git2::Oid;
use pve_gitops::source::{
    AllowedSigners, CacheEvent, Credentials, Error, HostKeyPins, Poll, PushOutcome,
    SignatureProblem, Source, SourceConfig, Update,
};
use std::path::Path;
use support::git::{fingerprint, git, public_key, ssh_keygen, GitRemote};
use support::relay::Relay;
use support::sshd::Sshd;

fn oid(s: &str) -> Oid {
    Oid::from_str(s).unwrap()
}

/// A `file://` source of `remote`'s `main`, its cache in the remote's scratch space.
fn config(remote: &GitRemote) -> SourceConfig {
    let mut c = SourceConfig::new(remote.url(), "main");
    c.cache_root = remote.scratch("cache");
    c
}

fn updated(poll: Result<Poll, Error>) -> Update {
    match poll {
        Ok(Poll::Updated(u)) => u,
        other => panic!("expected an update, got {other:?}"),
    }
}

#[test]
fn fetches_over_file_and_reads_a_subdir_without_following_links() {
    let remote = GitRemote::new();
    remote
        .write("clusters/prod/vms.yaml", "kind: VirtualMachine\n")
        .write(
            "clusters/prod/sets/workers.yaml",
            "kind: VirtualMachineSet\n",
        )
        .write("clusters/prod/.hidden/x.yaml", "hidden\n")
        .write("clusters/prod/secret.age", [0x61, 0x67, 0xff, 0x00, 0xfe])
        .write("clusters/other/vms.yaml", "other\n")
        .symlink("clusters/prod/passwd.yaml", "/etc/passwd")
        .symlink("clusters/prod/escape", "../../..")
        .symlink("clusters/prod/alias.yaml", "vms.yaml");
    let head = remote.commit("manifests");
    remote.push("main");

    let mut source = Source::open(config(&remote)).unwrap();
    let update = updated(source.poll());
    assert_eq!(update.head, oid(&head));
    assert_eq!(update.previous, None);
    assert!(update.fetched);
    assert!(!update.history_rewritten);
    assert_eq!(update.cache, CacheEvent::Created);
    assert_eq!(update.signer, None);

    let files = source.read_tree(update.head, "clusters/prod/").unwrap();
    assert_eq!(files.text("vms.yaml"), Some("kind: VirtualMachine\n"));
    assert_eq!(
        files.text("sets/workers.yaml"),
        Some("kind: VirtualMachineSet\n")
    );
    assert_eq!(files.text("secret.age"), None, "binary files are not text");
    assert_eq!(
        files.bytes("secret.age"),
        Some(&[0x61, 0x67, 0xff, 0x00, 0xfe][..]),
        "but kept as bytes, for binary age files"
    );
    for link in ["passwd.yaml", "escape", "alias.yaml"] {
        assert_eq!(files.bytes(link), None, "{link} must not be read");
        let why = files.problem(link, false).unwrap();
        assert!(why.contains("symbolic link"), "{link}: {why}");
    }
    let unreadable: Vec<_> = files.unreadable_manifests().map(|(p, _)| p).collect();
    assert_eq!(
        unreadable,
        ["alias.yaml", "passwd.yaml"],
        "an error of the revision"
    );
    for absent in [".hidden/x.yaml", "x.yaml"] {
        assert!(!files.exists(absent), "{absent} must not be read");
    }
    assert!(!files.exists("../other/vms.yaml") && !files.exists("other/vms.yaml"));
    let manifests: Vec<_> = files.manifests().map(|(p, _)| p.to_string()).collect();
    assert_eq!(manifests, ["sets/workers.yaml", "vms.yaml"]);

    assert_eq!(
        source
            .read_file(update.head, "clusters/prod", "secret.age")
            .unwrap(),
        [0x61, 0x67, 0xff, 0x00, 0xfe]
    );
    let err = source
        .read_file(update.head, "clusters/prod", "passwd.yaml")
        .unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    let err = source
        .read_tree(update.head, "clusters/prod/escape")
        .unwrap_err();
    assert!(
        err.to_string().contains("escape: is a symbolic link"),
        "{err}"
    );
    let err = source.read_tree(update.head, "clusters/nope").unwrap_err();
    assert!(
        err.to_string()
            .contains("clusters/nope: directory does not exist"),
        "{err}"
    );
    assert!(source.read_tree(update.head, "clusters/../etc").is_err());

    // A plain path is a file:// remote too.
    let mut by_path = SourceConfig::new(remote.bare.to_str().unwrap(), "main");
    by_path.cache_root = remote.scratch("cache-by-path");
    let mut by_path = Source::open(by_path).unwrap();
    assert_eq!(updated(by_path.poll()).head, oid(&head));
}

#[test]
fn poll_fetches_only_when_the_head_moves_and_the_cache_survives_a_restart() {
    let remote = GitRemote::new();
    remote.write("a.yaml", "a: 1\n");
    let first = remote.commit("first");
    remote.push("main");

    let mut source = Source::open(config(&remote)).unwrap();
    assert_eq!(updated(source.poll()).head, oid(&first));
    assert_eq!((source.stats().listings, source.stats().fetches), (1, 1));

    assert_eq!(
        source.poll().unwrap(),
        Poll::Unchanged { head: oid(&first) }
    );
    assert_eq!(
        source.poll().unwrap(),
        Poll::Unchanged { head: oid(&first) }
    );
    assert_eq!(
        (source.stats().listings, source.stats().fetches),
        (3, 1),
        "an unchanged head is listed, not fetched"
    );

    remote.write("a.yaml", "a: 2\n");
    let second = remote.commit("second");
    remote.push("main");
    let update = updated(source.poll());
    assert_eq!(update.head, oid(&second));
    assert_eq!(update.previous, Some(oid(&first)));
    assert!(update.fetched && !update.history_rewritten);
    assert_eq!(update.cache, CacheEvent::Reused);
    assert_eq!(source.stats().fetches, 2);
    assert_eq!(
        source.read_tree(update.head, "").unwrap().text("a.yaml"),
        Some("a: 2\n")
    );
    let cache = source.cache_path().to_path_buf();
    drop(source);

    // A restarted agent finds the revision in its cache and downloads nothing.
    let mut restarted = Source::open(config(&remote)).unwrap();
    assert_eq!(restarted.cache_path(), cache);
    assert_eq!(restarted.fetched_head(), Some(oid(&second)));
    let update = updated(restarted.poll());
    assert_eq!(update.head, oid(&second));
    assert_eq!(update.previous, Some(oid(&second)));
    assert!(!update.fetched);
    assert_eq!(update.cache, CacheEvent::Reused);
    assert_eq!(restarted.stats().fetches, 0);
}

#[test]
fn a_force_push_is_followed_and_reported() {
    let remote = GitRemote::new();
    remote.write("a.yaml", "a: 1\n");
    let base = remote.commit("base");
    remote.write("a.yaml", "a: 2\n");
    let old = remote.commit("to be rewritten");
    remote.push("main");
    let mut source = Source::open(config(&remote)).unwrap();
    assert_eq!(updated(source.poll()).head, oid(&old));

    git(&remote.work, &["reset", "-q", "--hard", &base]);
    remote.write("a.yaml", "a: 3\n");
    let new = remote.commit("rewritten");
    remote.force_push("main");

    let update = updated(source.poll());
    assert_eq!(update.head, oid(&new));
    assert_eq!(update.previous, Some(oid(&old)));
    assert!(update.history_rewritten);
    assert_eq!(source.fetched_head(), Some(oid(&new)));
    assert_eq!(
        source.read_tree(update.head, "").unwrap().text("a.yaml"),
        Some("a: 3\n")
    );

    // A fast-forward after that is not a rewrite.
    remote.write("a.yaml", "a: 4\n");
    remote.commit("forward");
    remote.push("main");
    assert!(!updated(source.poll()).history_rewritten);
}

#[test]
fn a_cache_deleted_while_running_is_rebuilt_and_reported() {
    let remote = GitRemote::new();
    remote.write("a.yaml", "a: 1\n");
    let head = remote.commit("first");
    remote.push("main");
    let mut source = Source::open(config(&remote)).unwrap();
    updated(source.poll());

    std::fs::remove_dir_all(source.cache_path()).unwrap();
    let update = updated(source.poll());
    assert_eq!(update.head, oid(&head));
    assert!(update.fetched, "everything is fetched again");
    assert!(!update.history_rewritten);
    match &update.cache {
        CacheEvent::Rebuilt { reason } => assert!(reason.contains("deleted"), "{reason}"),
        other => panic!("expected a rebuild, got {other:?}"),
    }
    assert_eq!(
        source.read_tree(update.head, "").unwrap().text("a.yaml"),
        Some("a: 1\n")
    );
    // Reported once.
    assert_eq!(source.poll().unwrap(), Poll::Unchanged { head: oid(&head) });
}

/// Replace every file under `dir` with garbage (removing first: libgit2 makes packs read-only).
fn scribble_over(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            scribble_over(&path);
        } else {
            std::fs::remove_file(&path).unwrap();
            std::fs::write(&path, b"not a git object").unwrap();
        }
    }
}

/// Damages a cache directory.
type Corruption = fn(&Path);

#[test]
fn a_corrupted_cache_is_rebuilt_on_open_and_reported() {
    let remote = GitRemote::new();
    remote.write("a.yaml", "a: 1\n");
    let head = remote.commit("first");
    remote.push("main");
    let corruptions: [(&str, Corruption); 3] = [
        ("objects", |cache| scribble_over(&cache.join("objects"))),
        ("HEAD", |cache| {
            std::fs::write(cache.join("HEAD"), "garbage").unwrap()
        }),
        ("tracking ref", |cache| {
            let refs = cache.join("refs/remotes/origin");
            let _ = std::fs::remove_file(refs.join("main"));
            std::fs::create_dir_all(&refs).unwrap();
            std::fs::write(refs.join("main"), "0123").unwrap();
            // A packed copy would hide the loose file's damage.
            let _ = std::fs::remove_file(cache.join("packed-refs"));
        }),
    ];
    for (what, corrupt) in corruptions {
        let mut source = Source::open(config(&remote)).unwrap();
        updated(source.poll());
        let cache = source.cache_path().to_path_buf();
        drop(source);
        corrupt(&cache);

        let mut source = Source::open(config(&remote)).unwrap();
        let update = updated(source.poll());
        match &update.cache {
            CacheEvent::Rebuilt { reason } => {
                assert!(reason.contains("unusable"), "{what}: {reason}")
            }
            other => panic!("{what}: expected a rebuild, got {other:?}"),
        }
        assert_eq!(update.head, oid(&head), "{what}");
        assert!(update.fetched, "{what}");
        assert_eq!(
            source.read_tree(update.head, "").unwrap().text("a.yaml"),
            Some("a: 1\n"),
            "{what}"
        );
    }
}

#[test]
fn an_unreachable_remote_is_a_typed_error_and_the_last_fetch_stays() {
    let remote = GitRemote::new();
    remote.write("a.yaml", "a: 1\n");
    let head = remote.commit("first");
    remote.push("main");
    let mut source = Source::open(config(&remote)).unwrap();
    updated(source.poll());

    let moved = remote.bare.with_extension("moved");
    std::fs::rename(&remote.bare, &moved).unwrap();
    match source.poll() {
        Err(Error::Unreachable {
            url, last_fetched, ..
        }) => {
            assert_eq!(url, remote.url());
            assert_eq!(last_fetched, Some(oid(&head)));
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert_eq!(source.fetched_head(), Some(oid(&head)));
    assert_eq!(
        source.read_tree(oid(&head), "").unwrap().text("a.yaml"),
        Some("a: 1\n")
    );

    std::fs::rename(&moved, &remote.bare).unwrap();
    assert_eq!(source.poll().unwrap(), Poll::Unchanged { head: oid(&head) });

    let mut other = config(&remote);
    other.branch = "release".into();
    let err = Source::open(other).unwrap().poll().unwrap_err();
    assert!(matches!(err, Error::BranchMissing { .. }), "{err:?}");
    assert!(
        err.to_string().contains("branch `release` does not exist"),
        "{err}"
    );
}

#[test]
fn signed_commit_mode_accepts_only_heads_signed_by_an_allowed_key() {
    let remote = GitRemote::new();
    let keys = remote.scratch("keys");
    let alice = ssh_keygen(&keys, "alice");
    let mallory = ssh_keygen(&keys, "mallory");
    let mut cfg = config(&remote);
    cfg.allowed_signers = Some(
        AllowedSigners::parse(&format!(
            "# who may change the cluster\nalice@example.org {}\n",
            public_key(&alice)
        ))
        .unwrap(),
    );
    let mut source = Source::open(cfg).unwrap();

    remote.write("a.yaml", "a: 1\n");
    let signed = remote.commit_signed("signed by alice", &alice);
    remote.push("main");
    let update = updated(source.poll());
    assert_eq!(update.head, oid(&signed));
    assert_eq!(update.signer.as_deref(), Some("alice@example.org"));

    let refused = |source: &mut Source, commit: &str| -> SignatureProblem {
        match source.poll() {
            Err(e @ Error::Signature { .. }) => {
                assert!(
                    e.to_string().contains(commit),
                    "the error names the commit: {e}"
                );
                let Error::Signature {
                    commit: c, problem, ..
                } = e
                else {
                    unreachable!()
                };
                assert_eq!(c, oid(commit));
                *problem
            }
            other => panic!("expected a refusal of {commit}, got {other:?}"),
        }
    };

    remote.write("a.yaml", "a: 2\n");
    let unsigned = remote.commit("not signed");
    remote.push("main");
    assert_eq!(refused(&mut source, &unsigned), SignatureProblem::Unsigned);
    // Still refused on the next poll (nothing new to fetch, the head is checked again).
    assert_eq!(refused(&mut source, &unsigned), SignatureProblem::Unsigned);

    remote.write("a.yaml", "a: 3\n");
    let by_mallory = remote.commit_signed("signed by mallory", &mallory);
    remote.push("main");
    assert_eq!(
        refused(&mut source, &by_mallory),
        SignatureProblem::UnknownKey {
            fingerprint: fingerprint(&mallory)
        }
    );

    // Alice's signature copied onto a commit with another message does not verify.
    remote.write("a.yaml", "a: 4\n");
    let genuine = remote.commit_signed("signed by alice", &alice);
    let object = git(&remote.work, &["cat-file", "commit", &genuine]);
    let forged_object = object.replace("signed by alice", "signed by alice, honestly");
    let forged_file = keys.join("forged");
    std::fs::write(&forged_file, format!("{forged_object}\n")).unwrap();
    let forged = git(
        &remote.work,
        &[
            "hash-object",
            "-t",
            "commit",
            "-w",
            forged_file.to_str().unwrap(),
        ],
    );
    git(&remote.work, &["reset", "-q", "--hard", &forged]);
    remote.push("main");
    assert!(matches!(
        refused(&mut source, &forged),
        SignatureProblem::Invalid { .. }
    ));

    remote.write("a.yaml", "a: 5\n");
    let good = remote.commit_signed("signed by alice again", &alice);
    remote.push("main");
    assert_eq!(updated(source.poll()).head, oid(&good));
}

/// A commit in the cache with one file and the given parent, as the status writer makes.
fn status_commit(source: &Source, content: &str, parent: Option<Oid>) -> Oid {
    let repo = source.repository();
    let blob = repo.blob(content.as_bytes()).unwrap();
    let mut tree = repo.treebuilder(None).unwrap();
    tree.insert("STATUS.md", blob, 0o100644).unwrap();
    let tree = repo.find_tree(tree.write().unwrap()).unwrap();
    let sig =
        git2::Signature::new("pve-gitops", "pve-gitops@localhost", &git2::Time::new(0, 0)).unwrap();
    let parents: Vec<_> = parent
        .map(|p| repo.find_commit(p).unwrap())
        .into_iter()
        .collect();
    let parents: Vec<_> = parents.iter().collect();
    repo.commit(None, &sig, &sig, content, &tree, &parents)
        .unwrap()
}

const STATUS: &str = "pve-gitops/status";

#[test]
fn push_to_the_status_branch_reports_a_lost_race_as_an_outcome() {
    let remote = GitRemote::new();
    remote.write("a.yaml", "a: 1\n");
    let main = remote.commit("manifests");
    remote.push("main");
    let mut source = Source::open(config(&remote)).unwrap();
    updated(source.poll());
    assert_eq!(source.fetch_branch(STATUS).unwrap(), None);

    let c1 = status_commit(&source, "one\n", None);
    assert_eq!(source.push(c1, STATUS, None).unwrap(), PushOutcome::Pushed);
    assert_eq!(remote.remote_head(STATUS), Some(c1.to_string()));

    // Built on a stale view (the branch exists now).
    let c2 = status_commit(&source, "two\n", None);
    match source.push(c2, STATUS, None).unwrap() {
        PushOutcome::NonFastForward { remote_head, .. } => assert_eq!(remote_head, Some(c1)),
        other => panic!("expected a rejection, got {other:?}"),
    }
    // Expected head right, but not a fast-forward.
    match source.push(c2, STATUS, Some(c1)).unwrap() {
        PushOutcome::NonFastForward {
            remote_head,
            reason,
        } => {
            assert_eq!(remote_head, Some(c1));
            assert!(reason.contains("non-fastforwardable"), "{reason}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(remote.remote_head(STATUS), Some(c1.to_string()));

    // Another node's agent pushes in between.
    git(&remote.work, &["fetch", "-q", "origin", STATUS]);
    git(
        &remote.work,
        &["checkout", "-q", "-b", "status", "FETCH_HEAD"],
    );
    remote.write("STATUS.md", "three\n");
    let c3 = oid(&remote.commit("another node"));
    remote.push(STATUS);
    let c4 = status_commit(&source, "four\n", Some(c1));
    match source.push(c4, STATUS, Some(c1)).unwrap() {
        PushOutcome::NonFastForward { remote_head, .. } => assert_eq!(remote_head, Some(c3)),
        other => panic!("expected a rejection, got {other:?}"),
    }

    // Rebuild on top and retry.
    assert_eq!(source.fetch_branch(STATUS).unwrap(), Some(c3));
    let c5 = status_commit(&source, "five\n", Some(c3));
    assert_eq!(
        source.push(c5, STATUS, Some(c3)).unwrap(),
        PushOutcome::Pushed
    );
    assert_eq!(remote.remote_head(STATUS), Some(c5.to_string()));
    assert_eq!(source.fetch_branch(STATUS).unwrap(), Some(c5));

    // The branch the agent reads is never written, and status pushes do not move it.
    let err = source.push(c5, "main", Some(oid(&main))).unwrap_err();
    assert!(
        err.to_string().contains("the branch the agent reads"),
        "{err}"
    );
    assert_eq!(remote.remote_head("main"), Some(main.clone()));
    assert_eq!(source.poll().unwrap(), Poll::Unchanged { head: oid(&main) });
}

#[test]
fn ssh_fetch_and_push_with_a_pinned_host_key() {
    let remote = GitRemote::new();
    let keys = remote.scratch("ssh");
    let Some(mut sshd) = Sshd::start(&keys) else {
        return;
    };
    remote.write("a.yaml", "a: 1\n");
    let head = remote.commit("over ssh");
    remote.push("main");

    let url = sshd.url(&remote.bare);
    let ssh_config = |pins: &str, key: &Path, cache: &str| {
        let mut c = SourceConfig::new(url.clone(), "main");
        c.cache_root = remote.scratch(cache);
        c.credentials = Credentials::SshKey {
            private_key: key.to_path_buf(),
        };
        c.host_keys = Some(HostKeyPins::parse(pins).unwrap());
        c
    };

    // Pinned as a known_hosts line.
    let known_hosts = format!("[127.0.0.1]:{} {}", sshd.port, public_key(&sshd.host_key));
    let mut source = Source::open(ssh_config(&known_hosts, &sshd.client_key, "c1")).unwrap();
    let update = source
        .poll()
        .unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", sshd.log()));
    let Poll::Updated(update) = update else {
        panic!("{update:?}")
    };
    assert_eq!(update.head, oid(&head));
    assert_eq!(
        source.read_tree(update.head, "").unwrap().text("a.yaml"),
        Some("a: 1\n")
    );
    assert_eq!(source.poll().unwrap(), Poll::Unchanged { head: oid(&head) });

    // And the status branch over SSH (git-receive-pack).
    let c1 = status_commit(&source, "over ssh\n", None);
    assert_eq!(source.push(c1, STATUS, None).unwrap(), PushOutcome::Pushed);
    assert_eq!(remote.remote_head(STATUS), Some(c1.to_string()));

    // Pinned as a fingerprint.
    let mut source = Source::open(ssh_config(
        &fingerprint(&sshd.host_key),
        &sshd.client_key,
        "c2",
    ))
    .unwrap();
    assert_eq!(updated(source.poll()).head, oid(&head));

    // Another key pinned: refused, naming host, expected and presented fingerprints.
    let other = ssh_keygen(&keys, "other_host_key");
    let mut source = Source::open(ssh_config(&public_key(&other), &sshd.client_key, "c3")).unwrap();
    let err = source.poll().unwrap_err();
    match &err {
        Error::HostKeyMismatch {
            host,
            expected,
            got,
            ..
        } => {
            assert_eq!(host, "127.0.0.1");
            assert_eq!(expected, &fingerprint(&other));
            assert_eq!(got, &fingerprint(&sshd.host_key));
        }
        other => panic!("expected a host key mismatch, got {other:?}"),
    }
    let message = err.to_string();
    for part in [
        "127.0.0.1",
        &fingerprint(&other),
        &fingerprint(&sshd.host_key),
        "refusing",
    ] {
        assert!(message.contains(part), "{part} missing in: {message}");
    }
    assert_eq!(source.fetched_head(), None, "nothing was fetched");

    // A deploy key the server does not know: an authentication error, not a hang.
    let stranger = ssh_keygen(&keys, "stranger");
    let mut source = Source::open(ssh_config(&known_hosts, &stranger, "c4")).unwrap();
    let err = source.poll().unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");

    // No pin at all: refused before any connection.
    let mut unpinned = ssh_config(&known_hosts, &sshd.client_key, "c5");
    unpinned.host_keys = None;
    let err = Source::open(unpinned)
        .err()
        .expect("an unpinned SSH source is refused");
    assert!(
        err.to_string().contains("never trusted on first use"),
        "{err}"
    );

    // The server's host key changes (a reinstalled server, or a machine in the middle):
    // the source that fetched with the old pin refuses, and keeps what it fetched.
    let client_key = sshd.client_key.clone();
    let mut pinned = Source::open(ssh_config(&known_hosts, &client_key, "c6")).unwrap();
    let before = updated(pinned.poll()).head;
    let old = fingerprint(&sshd.host_key);
    sshd.change_host_key(&keys);
    let new = fingerprint(&sshd.host_key);
    assert_ne!(old, new);
    match pinned.poll() {
        Err(Error::HostKeyMismatch { expected, got, .. }) => {
            assert_eq!(expected, old);
            assert_eq!(got, new);
        }
        other => panic!(
            "expected the changed key to be refused, got {other:?}\nsshd log:\n{}",
            sshd.log()
        ),
    }
    assert_eq!(pinned.fetched_head(), Some(before));
    assert_eq!(
        pinned.read_tree(before, "").unwrap().text("a.yaml"),
        Some("a: 1\n")
    );
    drop(pinned);
    // Once the operator has checked the new key and pinned it, fetching works again.
    let mut repinned = Source::open(ssh_config(&new, &client_key, "c6")).unwrap();
    assert_eq!(updated(repinned.poll()).head, before);
}

/// One SSH login serves the polls that follow it, the fetch of a new head and the push of
/// the status branch; when the server drops the connection, the next poll logs in again
/// and answers as if nothing happened.
#[test]
fn ssh_session_is_kept_between_operations_and_replaced_when_dropped() {
    let remote = GitRemote::new();
    let keys = remote.scratch("ssh");
    let Some(sshd) = Sshd::start(&keys) else {
        return;
    };
    remote.write("a.yaml", "a: 1\n");
    let first = remote.commit("first");
    remote.push("main");
    let mut c = SourceConfig::new(sshd.url(&remote.bare), "main");
    c.cache_root = remote.scratch("cache");
    c.credentials = Credentials::SshKey {
        private_key: sshd.client_key.clone(),
    };
    c.host_keys = Some(HostKeyPins::parse(&fingerprint(&sshd.host_key)).unwrap());
    let mut source = Source::open(c).unwrap();
    let logins = |expected: usize, when: &str| {
        // sshd logs the login before it answers it: no wait needed.
        assert_eq!(sshd.logins(), expected, "{when}; sshd log:\n{}", sshd.log());
    };

    assert_eq!(updated(source.poll()).head, oid(&first));
    logins(1, "after the first poll");
    for _ in 0..3 {
        assert_eq!(
            source.poll().unwrap(),
            Poll::Unchanged { head: oid(&first) }
        );
    }
    remote.write("a.yaml", "a: 2\n");
    let second = remote.commit("second");
    remote.push("main");
    let update = updated(source.poll());
    assert_eq!(update.head, oid(&second));
    assert_eq!(
        source.read_tree(update.head, "").unwrap().text("a.yaml"),
        Some("a: 2\n")
    );
    let status = status_commit(&source, "kept session\n", None);
    assert_eq!(
        source.push(status, STATUS, None).unwrap(),
        PushOutcome::Pushed
    );
    assert_eq!(remote.remote_head(STATUS), Some(status.to_string()));
    logins(1, "after polls, a fetch and a push");

    // The server (or a firewall) drops the connection between two polls.
    assert!(sshd.drop_connections() > 0, "no connection to drop");
    assert_eq!(
        source
            .poll()
            .unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", sshd.log())),
        Poll::Unchanged { head: oid(&second) }
    );
    logins(2, "after the dropped connection");
    assert_eq!(
        source.poll().unwrap(),
        Poll::Unchanged { head: oid(&second) }
    );
    logins(2, "after the poll that followed");
}

#[test]
fn credentials_stay_out_of_urls_and_errors() {
    let mut c = SourceConfig::new("https://bot:hunter2@git.example.org/infra.git", "main");
    c.cache_root = tempfile::tempdir().unwrap().keep();
    let err = Source::open(c).err().unwrap();
    let message = err.to_string();
    assert!(!message.contains("hunter2"), "{message}");
    assert!(
        message.contains("https://bot:***@git.example.org/infra.git"),
        "{message}"
    );

    let mut c = SourceConfig::new("http://127.0.0.1:9/infra.git", "main");
    c.credentials = Credentials::Token {
        file: "/nonexistent".into(),
    };
    assert!(Source::open(c)
        .err()
        .unwrap()
        .to_string()
        .contains("plain http"));
}

/// `op` on its own thread, with a deadline far past the bound it is expected to keep.
fn within<T: Send + 'static>(
    deadline: std::time::Duration,
    op: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(op()).unwrap());
    rx.recv_timeout(deadline)
        .expect("the git operation hung past its deadline")
}

#[test]
fn a_remote_that_accepts_and_never_answers_is_unreachable_not_a_hang() {
    // nextest runs each test in its own process: the bound is this test's alone.
    pve_gitops::source::bound_network_waits(std::time::Duration::from_secs(1));
    let cache = tempfile::tempdir().unwrap();
    // Ports that accept connections and never say a word (a hung forge, a proxy dropping
    // the traffic), for as long as the test runs.
    let (silent_https, silent_ssh) = (Relay::silent(), Relay::silent());
    let https = {
        let mut c = SourceConfig::new(
            format!("https://127.0.0.1:{}/infra.git", silent_https.port),
            "main",
        );
        c.cache_root = cache.path().join("https");
        c
    };
    let ssh = {
        let mut c = SourceConfig::new(
            format!("ssh://git@127.0.0.1:{}/infra.git", silent_ssh.port),
            "main",
        );
        c.cache_root = cache.path().join("ssh");
        c.credentials = Credentials::SshKey {
            private_key: cache.path().join("deploy_key"),
        };
        c.host_keys =
            Some(HostKeyPins::parse("SHA256:DtRtzr6c2VtIKhz7b0r4P6HElmkBIUM0qhZnX3K508Y").unwrap());
        c
    };
    for config in [https, ssh] {
        let url = config.url.clone();
        let started = std::time::Instant::now();
        let polled = within(std::time::Duration::from_secs(60), move || {
            Source::open(config).unwrap().poll()
        });
        match polled {
            Err(Error::Unreachable {
                url: named,
                last_fetched,
                message,
                ..
            }) => {
                assert_eq!(named, url);
                assert_eq!(last_fetched, None);
                assert!(
                    message.starts_with("no answer within 1s ("),
                    "{url}: {message}"
                );
            }
            other => panic!("{url}: expected Unreachable, got {other:?}"),
        }
        // The bound is what ended it, not a refusal.
        assert!(
            started.elapsed() >= std::time::Duration::from_secs(1),
            "{url}"
        );
    }
}
