//! README.md's quick start stays true: the summary it shows for `vigil run` is what the
//! default job prints today. Every line of that block without a `…` placeholder (counts,
//! blocked and late decisions, dead letters, model, state) must appear verbatim in the output
//! of a real run, so a change that moves a number fails here until the README follows.

use std::path::Path;

use support::vigil;

mod support;

/// The lines of the README's first fenced block that starts with `vigil run summary`.
fn quoted_summary(readme: &str) -> Vec<String> {
    let start = readme.find("```\nvigil run summary\n").expect("README.md quotes the run summary in a ``` block") + 4;
    let block = &readme[start..start + readme[start..].find("```").expect("the block is closed")];
    block.lines().map(str::trim_end).filter(|line| !line.contains('…')).map(str::to_owned).collect()
}

#[test]
fn quick_start_summary_matches_a_real_run() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let quoted = quoted_summary(&readme);
    assert!(quoted.len() >= 5, "too few checkable lines quoted: {quoted:?}");
    assert!(quoted.iter().any(|l| l.contains("blocked")), "the blocked count is quoted: {quoted:?}");
    // The quick start runs in a fresh directory: outputs land in ./out, as the README shows.
    let dir = tempfile::tempdir().unwrap();
    let output = vigil().current_dir(dir.path()).arg("run").output().unwrap();
    assert!(output.status.success(), "vigil run failed: {}", String::from_utf8_lossy(&output.stderr));
    let printed = String::from_utf8(output.stdout).unwrap();
    let printed: Vec<&str> = printed.lines().map(str::trim_end).collect();
    for line in &quoted {
        assert!(
            printed.contains(&line.as_str()),
            "README.md quotes `{line}`, but `vigil run` printed:\n{}",
            printed.join("\n")
        );
    }
}
