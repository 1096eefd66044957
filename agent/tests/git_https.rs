//! The git source over HTTPS, against `git http-backend` behind a loopback TLS server
//! with a test CA (`tests/git/https_git.py`): fetch and push the status branch with a
//! token read from a file; a wrong, missing or plain-http token and an untrusted
//! certificate are refused with errors that name the remote; the token never shows in
//! an error, a log line or the status branch.

#[macro_use]
mod support;

use git2::Oid;
use pve_gitops::source::{Credentials, Error, Poll, PushOutcome, Source, SourceConfig};
use std::path::{Path, PathBuf};
use support::agent::Agent;
use support::fakepve::FakePve;
use support::git::{git, GitRemote};
use support::https_git::HttpsGit;

const STATUS: &str = "pve-gitops/status";

/// A token no other text in the test contains.
const TOKEN: &str = "glpat-Xq7mTokenZ3bra9-never-print-me";

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A remote with one commit on `main`, served over HTTPS; the token file is
/// `<scratch>/token`.
fn served(remote: &GitRemote) -> Option<(HttpsGit, PathBuf)> {
    let token = remote.scratch(".").join("token");
    write_private(&token, &format!("{TOKEN}\n"));
    let root = remote.bare.parent().unwrap().to_path_buf();
    let server = HttpsGit::start(&root, &token, &remote.scratch("tls"))?;
    Some((server, token))
}

fn https_config(server: &HttpsGit, remote: &GitRemote, token: &Path, cache: &str) -> SourceConfig {
    let mut c = SourceConfig::new(server.url("remote.git"), "main");
    c.cache_root = remote.scratch(cache);
    c.credentials = Credentials::Token {
        file: token.to_path_buf(),
    };
    c.ca_file = Some(server.ca_file.clone());
    c
}

/// Neither the error's message nor its debug form carries the token.
fn assert_no_token(err: &Error) {
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains(TOKEN), "the token leaked: {text}");
        assert!(!text.contains("Z3bra9"), "part of the token leaked: {text}");
    }
}

/// A parentless commit of one file, in `repo`, as the status writer makes them.
fn status_commit(repo: &git2::Repository) -> Oid {
    let blob = repo.blob(b"pushed over https\n").unwrap();
    let mut tree = repo.treebuilder(None).unwrap();
    tree.insert("STATUS.md", blob, 0o100644).unwrap();
    let tree = repo.find_tree(tree.write().unwrap()).unwrap();
    let sig = git2::Signature::now("pve-gitops", "pve-gitops@pve1").unwrap();
    repo.commit(None, &sig, &sig, "status", &tree, &[]).unwrap()
}

#[test]
fn https_fetch_and_push_with_a_token_and_a_private_ca() {
    let remote = GitRemote::new();
    remote.write("clusters/prod/a.yaml", "a: 1\n");
    let head = remote.commit("over https");
    remote.push("main");
    let Some((server, token)) = served(&remote) else {
        return;
    };
    let url = server.url("remote.git");

    let mut source = Source::open(https_config(&server, &remote, &token, "c1")).unwrap();
    let update = match source.poll() {
        Ok(Poll::Updated(u)) => u,
        other => panic!("{other:?}\nserver log:\n{}", server.log()),
    };
    assert_eq!(update.head, Oid::from_str(&head).unwrap());
    assert_eq!(
        source
            .read_tree(update.head, "clusters/prod")
            .unwrap()
            .text("a.yaml"),
        Some("a: 1\n")
    );
    assert_eq!(
        source.poll().unwrap(),
        Poll::Unchanged { head: update.head }
    );

    // The status branch goes back over HTTPS (git-receive-pack), authenticated.
    let c1 = status_commit(source.repository());
    assert_eq!(source.push(c1, STATUS, None).unwrap(), PushOutcome::Pushed);
    assert_eq!(remote.remote_head(STATUS), Some(c1.to_string()));
    let log = server.log();
    assert!(
        log.contains("POST /remote.git/git-receive-pack 200 user=git"),
        "{log}"
    );
    assert!(
        log.contains("POST /remote.git/git-upload-pack 200 user=git"),
        "{log}"
    );

    // A wrong token: an authentication error naming the remote, nothing fetched.
    let wrong = remote.scratch(".").join("wrong-token");
    write_private(&wrong, "glpat-not-the-right-one\n");
    let mut source = Source::open(https_config(&server, &remote, &wrong, "c2")).unwrap();
    let err = source.poll().unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    let message = err.to_string();
    println!("wrong token: {message}");
    assert!(
        message.starts_with(&format!("{url}: authentication failed while ")),
        "{message}"
    );
    assert!(
        message.contains("the remote rejected the configured credential"),
        "{message}"
    );
    assert!(!message.contains("not-the-right-one"), "{message}");
    assert_no_token(&err);
    assert_eq!(source.fetched_head(), None);
    // ... and pushing with it is refused the same way.
    let err = source.push(c1, "other", None).unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    assert!(!err.to_string().contains("not-the-right-one"), "{err}");

    // No token configured: the remote's request for one is named.
    let mut c = https_config(&server, &remote, &token, "c3");
    c.credentials = Credentials::None;
    let err = Source::open(c).unwrap().poll().unwrap_err();
    assert!(
        err.to_string()
            .contains("asks for credentials (user name and token) that are not configured"),
        "{err}"
    );

    // A token file that cannot be read is named as such (the path, never its content).
    let err = Source::open(https_config(
        &server,
        &remote,
        &remote.scratch(".").join("missing-token"),
        "c4",
    ))
    .unwrap()
    .poll()
    .unwrap_err();
    assert!(matches!(err, Error::Credential { .. }), "{err:?}");
    assert!(err.to_string().contains("missing-token"), "{err}");

    // A CA that did not issue the server's certificate: refused before any credential
    // is sent.
    let requests_before = server.log().lines().count();
    let mut c = https_config(&server, &remote, &token, "c5");
    c.ca_file = Some(server.other_ca_file.clone());
    let err = Source::open(c).unwrap().poll().unwrap_err();
    match &err {
        Error::Tls { url: u, host, .. } => {
            assert_eq!(u, &url);
            assert_eq!(host, "127.0.0.1");
        }
        other => panic!("expected a TLS refusal, got {other:?}"),
    }
    assert!(err.to_string().contains("is not trusted"), "{err}");
    println!("wrong CA: {err}");
    assert_no_token(&err);
    assert_eq!(
        server.log().lines().count(),
        requests_before,
        "no request reached the server"
    );

    // No CA file: the system's store, which does not know the test CA.
    let mut c = https_config(&server, &remote, &token, "c6");
    c.ca_file = None;
    let err = Source::open(c).unwrap().poll().unwrap_err();
    println!("system store: {err}");
    assert!(
        matches!(&err, Error::Tls { host, .. } if host == "127.0.0.1"),
        "{err:?}"
    );
    assert!(err.to_string().contains("system's CA store"), "{err}");
    assert_no_token(&err);

    // Plain http with a token is refused before any connection; so is a CA file for a
    // remote that is not HTTPS.
    let mut c = SourceConfig::new(
        format!("http://127.0.0.1:{}/remote.git", server.port),
        "main",
    );
    c.cache_root = remote.scratch("c7");
    c.credentials = Credentials::Token {
        file: token.clone(),
    };
    let err = Source::open(c).err().unwrap();
    assert!(
        err.to_string()
            .contains("refusing to send a token over plain http"),
        "{err}"
    );
    let mut c = SourceConfig::new(remote.url(), "main");
    c.cache_root = remote.scratch("c8");
    c.ca_file = Some(server.ca_file.clone());
    let err = Source::open(c).err().unwrap();
    assert!(err.to_string().contains("does not use HTTPS"), "{err}");
}

/// The log's lines from `mark` on, each without its `conn=` field.
fn requests_since(server: &HttpsGit, mark: usize) -> Vec<String> {
    server
        .log()
        .lines()
        .skip(mark)
        .map(|l| l.split(" conn=").next().unwrap_or(l).to_string())
        .collect()
}

/// The agent speaks smart HTTP itself (libgit2's transport made a TLS handshake per
/// poll): an idle poll is one request on the connection the last one left open; a
/// repository moved on the same server is followed for the listing and the download; a
/// redirect to another origin is refused and nothing is sent there.
#[test]
fn polls_share_one_connection_and_redirects_stay_on_the_server() {
    let remote = GitRemote::new();
    remote.write("clusters/prod/a.yaml", "a: 1\n");
    let head = Oid::from_str(&remote.commit("over https")).unwrap();
    remote.push("main");
    let Some((server, token)) = served(&remote) else {
        return;
    };

    let mut source = Source::open(https_config(&server, &remote, &token, "c1")).unwrap();
    assert!(matches!(source.poll(), Ok(Poll::Updated(u)) if u.head == head));
    let mark = server.log().lines().count();
    for _ in 0..3 {
        assert_eq!(source.poll().unwrap(), Poll::Unchanged { head });
    }
    assert_eq!(
        requests_since(&server, mark),
        vec!["GET /remote.git/info/refs 200 user=git"; 3],
        "one request per idle poll"
    );
    let log = server.log();
    let connections: std::collections::BTreeSet<&str> = log
        .lines()
        .filter_map(|l| l.split(" conn=").nth(1))
        .collect();
    assert_eq!(connections.len(), 1, "one connection for all:\n{log}");

    let moved = |path: &str, cache: &str| {
        let mut c = https_config(&server, &remote, &token, cache);
        c.url = server.url(path);
        Source::open(c).unwrap()
    };
    let mark = server.log().lines().count();
    let mut source = moved("moved/remote.git", "c2");
    assert!(matches!(source.poll(), Ok(Poll::Updated(u)) if u.head == head));
    assert_eq!(
        requests_since(&server, mark),
        [
            "GET /moved/remote.git/info/refs 301 user=-",
            "GET /remote.git/info/refs 200 user=git",
            "POST /remote.git/git-upload-pack 200 user=git",
        ]
    );

    let mark = server.log().lines().count();
    let err = moved("elsewhere/remote.git", "c3").poll().unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!(
            "the remote redirects to https://localhost:{}; configure that URL",
            server.port
        )),
        "{err}"
    );
    assert_no_token(&err);
    assert_eq!(
        requests_since(&server, mark),
        ["GET /elsewhere/remote.git/info/refs 301 user=-"]
    );
}

fn manifests(replicas: u32) -> String {
    support::manifests::web_set(replicas, 801, "[pve1]", "1G")
}

/// Every commit message and file of the status branch, as one text.
fn status_branch_text(remote: &GitRemote) -> String {
    let mut text = git(&remote.bare, &["log", "--format=%B", STATUS]);
    for commit in git(&remote.bare, &["rev-list", STATUS]).lines() {
        for file in git(&remote.bare, &["ls-tree", "-r", "--name-only", commit]).lines() {
            text.push_str(&git(&remote.bare, &["show", &format!("{commit}:{file}")]));
        }
    }
    text
}

/// `pve-gitops run` with the repository, its token file, CA and `metricsListen` taken
/// from the config file: applies over HTTPS, commits status back over HTTPS, serves
/// /metrics where the file says; a token rotated to a wrong one is reported naming the
/// remote, and never printed.
#[tokio::test]
async fn run_follows_an_https_remote_configured_in_the_config_file() {
    let pve = fake!(with_template);
    let remote = GitRemote::new();
    remote.write("clusters/prod/web.yaml", manifests(1));
    let first = remote.commit("one web server");
    remote.push("main");
    let Some((server, token)) = served(&remote) else {
        return;
    };
    let dir = remote.scratch("agent");
    let api_token = dir.join("api-token");
    write_private(
        &api_token,
        &format!("{}={}\n", pve.info.token_id, pve.info.token_secret),
    );
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "repo:\n  url: {url}\n  path: clusters/prod\n  cache: {cache}\n  tokenFile: {token}\n  caFile: {ca}\n  interval: 1s\n\
             api:\n  url: {api}\n  tokenFile: {api_token}\n  caFile: {api_ca}\n\
             interval: 1s\nmetricsListen: 127.0.0.1:0\n",
            url = server.url("remote.git"),
            cache = dir.join("cache").display(),
            token = token.display(),
            ca = server.ca_file.display(),
            api = pve.base_url(),
            api_token = api_token.display(),
            api_ca = pve.info.ca_file.display(),
        ),
    )
    .unwrap();
    let mut agent = Agent::run(&dir, &args!["--config", &config]);

    // /metrics is served where the config file says (port 0: a free one).
    let listening = agent.wait_for("the metrics listener", |l| {
        l.contains("metrics listening on http://")
    });
    let addr = listening
        .split("http://")
        .nth(1)
        .and_then(|s| s.split("/metrics").next())
        .expect("address logged")
        .to_string();
    let metrics = http_get(&addr, "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");

    agent.wait_for("the first pass", |l| {
        l.contains("reconciled") && l.contains("changed=1")
    });
    assert!(pve.control.vm(801).await.is_some());
    agent.wait_for("the status commit", |l| l.contains("status committed"));
    // The first status commit (later passes, every second, may have added more).
    let root = git(&remote.bare, &["rev-list", "--max-parents=0", STATUS]);
    let message = git(&remote.bare, &["log", "-1", "--format=%B", &root]);
    assert_eq!(
        message.trim_end(),
        format!(
            "apply {}: 1 created, 0 updated, 0 deleted, 0 failed\n\nApplied-Commit: {first}\nCluster: prod\nNode: pve1",
            &first[..7]
        )
    );
    assert!(server
        .log()
        .contains("POST /remote.git/git-receive-pack 200"));

    // The agent's token file now holds a wrong token (read at each connection): the
    // error names the remote and the step, the agent keeps running, and once the file
    // is right again the next push is applied.
    write_private(&token, "glpat-old-and-wrong\n");
    let refused = agent.wait_for("the refusal", |l| l.contains("authentication failed"));
    println!("logged: {refused}");
    assert!(
        refused.contains(&format!(
            "{}: authentication failed while",
            server.url("remote.git")
        )),
        "{refused}"
    );
    assert!(agent.running(), "the agent keeps running");
    write_private(&token, &format!("{TOKEN}\n"));
    remote.write("clusters/prod/web.yaml", manifests(2));
    remote.commit("two web servers");
    remote.push("main");
    agent.wait_for("the pass after the token is fixed", |l| {
        l.contains("reconciled") && l.contains("changed=1")
    });
    assert!(pve.control.vm(802).await.is_some());
    agent.wait_for("the second status commit", |l| {
        l.contains("status committed")
    });

    let log = agent.log();
    assert!(!log.contains(TOKEN) && !log.contains("Z3bra9"), "{log}");
    assert!(!log.contains("glpat-old-and-wrong"), "{log}");
    let status = status_branch_text(&remote);
    assert!(status.contains("Applied-Commit:"), "{status}");
    assert!(
        !status.contains(TOKEN) && !status.contains("Z3bra9"),
        "{status}"
    );
    for file in std::fs::read_dir(dir.join("state")).unwrap() {
        let text = std::fs::read_to_string(file.unwrap().path()).unwrap_or_default();
        assert!(!text.contains(TOKEN), "{text}");
    }
}

/// A GET over plain HTTP/1.1 on loopback: the whole answer.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}
