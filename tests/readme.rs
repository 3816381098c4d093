//! The README stays true: every key of the configuration contract is documented, and the first
//! lines hold the two commands CI and users run.

use std::collections::BTreeSet;

fn keys(value: &toml::Value, out: &mut BTreeSet<String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                out.insert(k.clone());
                keys(v, out);
            }
        }
        toml::Value::Array(a) => a.iter().for_each(|v| keys(v, out)),
        _ => {}
    }
}

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md")
}

#[test]
fn every_contract_key_is_in_the_configuration_reference() {
    let contract = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/config/contract.toml"
    ))
    .unwrap();
    let doc: toml::Value = toml::from_str(&contract).unwrap();
    let mut all = BTreeSet::new();
    keys(&doc, &mut all);
    assert!(all.len() > 40, "walked the contract: {all:?}");
    let readme = readme();
    let missing: Vec<_> = all
        .iter()
        .filter(|k| !readme.contains(&format!("`{k}`")))
        .collect();
    assert!(missing.is_empty(), "keys missing from README: {missing:?}");
}

#[test]
fn the_first_lines_give_the_run_and_test_commands_and_ci_runs_the_test_command() {
    let readme = readme();
    let head: String = readme.lines().take(6).collect::<Vec<_>>().join("\n");
    assert!(
        head.contains("serve --config config/rgsd.toml"),
        "run command in the first lines:\n{head}"
    );
    assert!(head.contains("scripts/test"), "test command:\n{head}");
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run")).unwrap();
    assert!(ci.lines().any(|l| l.trim() == "scripts/test"), "{ci}");
}
