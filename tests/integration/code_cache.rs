//! Compiled plugin code is cached: the second load of the same file does not compile, and a
//! damaged cache file is dropped and replaced, never trusted.

use std::time::Instant;

use larder::policy::PluginEngine;
use larder_tests::plugins;

fn cache_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect()
}

#[test]
fn a_second_load_comes_from_the_cache_and_a_damaged_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(plugins::path("analysis-policy")).unwrap();
    let engine = PluginEngine::with_code_cache(Some(dir.path())).unwrap();

    let t = Instant::now();
    let first = engine.load("analysis-policy", &bytes).unwrap();
    let compiled = t.elapsed();
    let files = cache_files(dir.path());
    assert_eq!(files.len(), 1, "one cache file per plugin and engine");

    let t = Instant::now();
    let second = engine.load("analysis-policy", &bytes).unwrap();
    let cached = t.elapsed();
    assert_eq!(first.version, second.version);
    eprintln!("compile {compiled:?}, from cache {cached:?}");

    // A truncated cache file is not trusted: the plugin compiles again and the file is rewritten.
    // (Cache files are memory-mapped: one is damaged here only once no loaded plugin maps it,
    // as `docs/operations.md` asks of whoever touches them.)
    drop((first, second));
    let len = std::fs::metadata(&files[0]).unwrap().len();
    std::fs::write(&files[0], b"garbage").unwrap();
    engine.load("analysis-policy", &bytes).unwrap();
    assert_eq!(std::fs::metadata(&files[0]).unwrap().len(), len);
}
