//! Compiled plugin code is cached: the second load of the same file does not compile, and a
//! damaged cache file is dropped and replaced, never trusted; the cache keeps to its budget.

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
    let engine = PluginEngine::with_code_cache(Some(dir.path()), u64::MAX).unwrap();

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

fn sizes(dir: &std::path::Path) -> u64 {
    cache_files(dir)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

#[test]
fn a_cache_over_its_budget_drops_the_least_recently_used_compilations() {
    let [a, b, c] = ["analysis-policy", "standard", "panic"]
        .map(|name| (name, std::fs::read(plugins::path(name)).unwrap()));

    // What each compilation weighs, in a cache with room for all.
    let roomy = tempfile::tempdir().unwrap();
    let engine = PluginEngine::with_code_cache(Some(roomy.path()), u64::MAX).unwrap();
    let mut weight = Vec::new();
    for (name, bytes) in [&a, &b, &c] {
        let before = sizes(roomy.path());
        engine.load(name, bytes).unwrap();
        weight.push(sizes(roomy.path()) - before);
    }
    let all: u64 = weight.iter().sum();

    // One byte short of all three: the third write must drop one file, and the one not used
    // for longest is `b`, since `a` was loaded again (from the cache) after it.
    let dir = tempfile::tempdir().unwrap();
    let engine = PluginEngine::with_code_cache(Some(dir.path()), all - 1).unwrap();
    let abandoned = dir.path().join("old.cwasm.tmp1234");
    let in_flight = dir.path().join("new.cwasm.tmp5678");
    for tmp in [&abandoned, &in_flight] {
        std::fs::write(tmp, b"a write that never finished").unwrap();
    }
    std::fs::File::options()
        .write(true)
        .open(&abandoned)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(7200))
        .unwrap();
    let step = std::time::Duration::from_millis(20);
    engine.load(a.0, &a.1).unwrap();
    std::thread::sleep(step);
    engine.load(b.0, &b.1).unwrap();
    let a_and_b = cache_files(dir.path());
    assert_eq!(a_and_b.len(), 2);
    std::thread::sleep(step);
    engine.load(a.0, &a.1).unwrap();
    assert_eq!(
        cache_files(dir.path()),
        a_and_b,
        "a's second load was a cache hit"
    );
    std::thread::sleep(step);
    engine.load(c.0, &c.1).unwrap();

    let kept = cache_files(dir.path());
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert_eq!(sizes(dir.path()), weight[0] + weight[2]);
    assert!(sizes(dir.path()) < all);
    assert!(!abandoned.exists(), "an hour-old temporary file is deleted");
    assert!(
        in_flight.exists(),
        "another gateway's write in progress is left alone"
    );

    // A budget smaller than one compilation still keeps the latest one.
    let tiny = tempfile::tempdir().unwrap();
    let engine = PluginEngine::with_code_cache(Some(tiny.path()), 1).unwrap();
    engine.load(a.0, &a.1).unwrap();
    engine.load(b.0, &b.1).unwrap();
    assert_eq!(sizes(tiny.path()), weight[1]);
}
