//! The corpus of broken manifests under `tests/broken/`: each case is a file or a directory
//! whose lines carry `#! <error-kind>` markers where an error is expected. The test loads
//! each case (several kinds on one line: `#! a, b`) and asserts that the errors reported are exactly the marked (file, line, kind)
//! triples: no missing error, no extra one, no error on the wrong line.

use pve_gitops_schema::{load, Repository};
use std::collections::BTreeSet;
use std::path::Path;

type Expected = BTreeSet<(String, usize, String)>;

fn read_case(path: &Path) -> (Repository, Expected) {
    let mut repo = Repository::new();
    let mut expected = Expected::new();
    let mut add = |rel: String, file: &Path| {
        let text = std::fs::read_to_string(file).unwrap();
        for (i, line) in text.lines().enumerate() {
            if let Some((_, kinds)) = line.split_once("#! ") {
                for kind in kinds.split(',') {
                    expected.insert((rel.clone(), i + 1, kind.trim().to_string()));
                }
            }
        }
        repo.add(rel, text);
    };
    if path.is_dir() {
        let mut stack = vec![path.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p
                        .strip_prefix(path)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/");
                    add(rel, &p);
                }
            }
        }
    } else {
        add(
            path.file_name().unwrap().to_string_lossy().into_owned(),
            path,
        );
    }
    (repo, expected)
}

#[test]
fn every_broken_case_reports_exactly_its_marked_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 30,
        "the corpus must hold at least 30 cases, has {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let (repo, expected) = read_case(case);
        assert!(
            !expected.is_empty(),
            "{}: a broken case must mark at least one error",
            case.display()
        );
        let actual: Expected = match load(&repo) {
            Ok(_) => Expected::new(),
            Err(diags) => diags
                .into_sorted()
                .into_iter()
                .map(|d| (d.location.file.clone(), d.location.line, d.kind.to_string()))
                .collect(),
        };
        if actual != expected {
            let shown = match load(&repo) {
                Err(d) => d.to_string(),
                Ok(_) => "(valid)".into(),
            };
            failures.push(format!(
                "{}:\n  expected {expected:?}\n  actual   {actual:?}\n{shown}",
                case.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Errors name `file:line:column` and carry a hint where one helps.
#[test]
fn messages_name_position_and_suggest() {
    let (repo, _) = read_case(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken/02-unknown-field.yaml"),
    );
    let text = load(&repo).unwrap_err().to_string();
    assert!(
        text.starts_with("02-unknown-field.yaml:14:3: unknown-field: unknown field `memroy` in `spec`\n  hint: did you mean `memory`?"),
        "{text}"
    );
}
