//! Line coverage from an LCOV report (what `cargo llvm-cov report --lcov` writes), as a table
//! per module of a source folder: `cargo xtask coverage` prints it for `host/src`.

use std::collections::BTreeMap;
use std::path::Path;

/// Lines found and lines hit.
#[derive(Default, Clone, Copy)]
struct Lines {
    found: u64,
    hit: u64,
}

impl Lines {
    fn add(&mut self, other: Lines) {
        self.found += other.found;
        self.hit += other.hit;
    }

    fn row(&self, name: &str, indent: usize) -> String {
        let percent = if self.found == 0 {
            100.0
        } else {
            100.0 * self.hit as f64 / self.found as f64
        };
        let name = format!("{:indent$}{name}", "");
        format!(
            "{name:<44} {:>6} / {:<6} {percent:>5.1}%\n",
            self.hit, self.found
        )
    }
}

/// The line coverage of the files under `src` in an LCOV report: a row per module (its first
/// path component: `store` for `store/redis.rs`, `gateway` for `gateway.rs`), with a row per
/// file under it when it has several, and the total.
pub fn table(lcov: &str, src: &Path) -> String {
    let mut files: BTreeMap<String, Lines> = BTreeMap::new();
    let mut current: Option<(String, Lines)> = None;
    for line in lcov.lines() {
        if let Some(path) = line.strip_prefix("SF:") {
            current = Path::new(path)
                .strip_prefix(src)
                .ok()
                .map(|rel| (rel.display().to_string(), Lines::default()));
        } else if let Some((_, lines)) = current.as_mut() {
            if let Some(n) = line.strip_prefix("LF:") {
                lines.found = n.trim().parse().unwrap_or(0);
            } else if let Some(n) = line.strip_prefix("LH:") {
                lines.hit = n.trim().parse().unwrap_or(0);
            } else if line == "end_of_record"
                && let Some((file, lines)) = current.take()
            {
                files.entry(file).or_default().add(lines);
            }
        }
    }
    let mut modules: BTreeMap<String, Vec<(&str, Lines)>> = BTreeMap::new();
    for (file, lines) in &files {
        let first = file.split('/').next().unwrap_or(file);
        let module = first.strip_suffix(".rs").unwrap_or(first).to_owned();
        modules.entry(module).or_default().push((file, *lines));
    }
    let mut out = format!("line coverage of {} (lines hit / lines)\n", src.display());
    let mut total = Lines::default();
    for (module, files) in &modules {
        let mut sum = Lines::default();
        files.iter().for_each(|(_, l)| sum.add(*l));
        total.add(sum);
        let folder = files.len() > 1 || files[0].0.contains('/');
        out += &sum.row(
            &if folder {
                format!("{module}/")
            } else {
                files[0].0.to_owned()
            },
            0,
        );
        if folder {
            for (file, lines) in files {
                out += &lines.row(file, 2);
            }
        }
    }
    out += &total.row("total", 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_summed_per_module_and_files_elsewhere_are_left_out() {
        let lcov = "SF:/w/host/src/store/redis.rs\nDA:1,1\nLF:10\nLH:5\nend_of_record\n\
                    SF:/w/host/src/store/mod.rs\nLF:10\nLH:10\nend_of_record\n\
                    SF:/w/host/src/gateway.rs\nLF:4\nLH:1\nend_of_record\n\
                    SF:/w/tests/support/gateway.rs\nLF:100\nLH:0\nend_of_record\n";
        let table = table(lcov, Path::new("/w/host/src"));
        let rows: Vec<Vec<&str>> = table
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows,
            [
                vec!["gateway.rs", "1", "/", "4", "25.0%"],
                vec!["store/", "15", "/", "20", "75.0%"],
                vec!["store/mod.rs", "10", "/", "10", "100.0%"],
                vec!["store/redis.rs", "5", "/", "10", "50.0%"],
                vec!["total", "16", "/", "24", "66.7%"],
            ]
        );
    }
}
